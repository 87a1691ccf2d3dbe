from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from measure.capture import DenseReference, FlowAccumulator, capture_flow
from measure.slicing import slice_model
from measure.testing import FAMILIES, random_tokens, tiny_model


def out_bases(result) -> list[np.ndarray]:
    return [s.basis for s in result.spectra if s.position == "out"]


def sliced_and_reference(family, kept_dim, tmp_path):
    dense = tiny_model(family, dtype=torch.float64, seed=3)
    tokens = random_tokens(dense.config.vocab_size, 6, 12, seed=1)
    windows = random_tokens(dense.config.vocab_size, 3, 12, seed=2)
    facts_norm = "layer" if family in ("opt", "phi") else "rms"
    reference = DenseReference.compute(
        dense, windows, tmp_path / "ref", centre=facts_norm == "layer"
    )
    sliced = copy.deepcopy(dense)
    result = slice_model(sliced, tokens, kept_dim=kept_dim, record_bases=True, progress=False)
    return dense, sliced, result, reference


@pytest.mark.parametrize("family", FAMILIES)
def test_unsliced_rotation_has_no_flow_error(family, tmp_path):
    dense = tiny_model(family, dtype=torch.float64, seed=3)
    hidden = dense.config.hidden_size
    _, sliced, result, reference = sliced_and_reference(family, hidden, tmp_path)
    flow = capture_flow(sliced, reference, out_bases(result))
    # the reference residual is stored in float16, so agreement is to ~1e-3 relative
    np.testing.assert_allclose(flow["residual_rel_error"], 0.0, atol=2e-3)
    np.testing.assert_allclose(flow["residual_cosine"], 1.0, atol=1e-5)
    np.testing.assert_allclose(flow["residual_norm"], flow["residual_norm_dense"], rtol=2e-3)
    # the reference logits are stored in float32
    assert abs(flow["kl_divergence"]) < 1e-10
    assert flow["top1_agreement"] == 1.0
    assert flow["logit_scale"] == pytest.approx(1.0, abs=1e-6)
    assert flow["entropy"] == pytest.approx(flow["entropy_dense"], abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_slicing_shows_up_in_the_flow(family, tmp_path):
    dense = tiny_model(family, dtype=torch.float64, seed=3)
    kept = dense.config.hidden_size // 2
    _, sliced, result, reference = sliced_and_reference(family, kept, tmp_path)
    flow = capture_flow(sliced, reference, out_bases(result))
    assert np.all(flow["residual_rel_error"][:-1] > 1e-3)
    assert flow["kl_divergence"] > 1e-6
    assert flow["window_kl_divergence"].shape == (3,)
    assert flow["kl_divergence"] == pytest.approx(flow["window_kl_divergence"].mean())


def test_accumulator_matches_a_hand_computation():
    acc = FlowAccumulator(1)
    dense = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    mapped = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    acc.add_residual(0, mapped, dense)
    acc.tokens += 2
    z_dense = torch.tensor([[0.0, 1.0, 2.0]])
    acc.add_logits(2 * z_dense, z_dense)  # a tempered copy: tau = 2 exactly
    out = acc.result()
    assert out["residual_norm"][0] == pytest.approx((5 + 1) / 2)
    assert out["residual_rel_error"][0] == pytest.approx(np.sqrt(2 / 26))
    assert out["residual_cosine"][0] == pytest.approx((1 + 0) / 2)
    assert out["logit_scale"] == pytest.approx(2.0)
    p = torch.softmax(z_dense[0].double(), -1)
    q = torch.softmax(2 * z_dense[0].double(), -1)
    assert out["kl_divergence"] == pytest.approx(float((p * (p / q).log()).sum()))
    assert out["top1_agreement"] == 1.0
    assert out["entropy_dense"] == pytest.approx(float(-(p * p.log()).sum()))


def test_reference_is_written_once_and_atomically(tmp_path):
    dense = tiny_model("llama", dtype=torch.float32, seed=0)
    windows = random_tokens(dense.config.vocab_size, 2, 8)
    ref = DenseReference.compute(dense, windows, tmp_path / "ref", centre=False)
    mtime = (ref.directory / "logits.npy").stat().st_mtime_ns
    again = DenseReference.compute(dense, windows, tmp_path / "ref", centre=False)
    assert (again.directory / "logits.npy").stat().st_mtime_ns == mtime
    assert ref.residuals.shape == (2, dense.config.num_hidden_layers, 8, dense.config.hidden_size)
    assert [p.name for p in tmp_path.iterdir()] == ["ref"]
