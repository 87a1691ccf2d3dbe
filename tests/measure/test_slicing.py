"""Fusion, PCA, the interleaved rotate-and-slice algorithm, schedules, save and load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from measure.adapters import get_adapter
from measure.errors import ToolkitError
from measure.slicing import (
    SecondMoment,
    SlicedRMSNorm,
    SlicingSchedule,
    fuse_model,
    junction_names,
    kept_dim_from_sparsity,
    load_sliced,
    slice_model,
)
from measure.slicing.blocks import SlicedBlockMixin
from measure.slicing.interleaved import capture_layer0_inputs
from measure.slicing.pca import random_orthogonal_upper_left
from measure.slicing.rotate import (
    rotate_embeddings,
    rotate_readers,
    rotate_writer,
    set_shortcut,
    shortcut,
)
from measure.testing import (
    FAMILIES,
    assert_logits_close,
    fusion_tolerance,
    logits,
    random_tokens,
    tiny_model,
)
from theory import sliced_parameter_count

CALIBRATION = random_tokens(128, 6, 16, seed=11)
PROBE = random_tokens(128, 2, 12, seed=12)


# ---------------------------------------------------------------- schedule
@pytest.mark.parametrize(
    ("sparsity", "expected"),
    [(0.1, 512), (0.2, 456), (0.25, 432), (0.3, 400), (0.4, 344), (0.5, 288)],
)
def test_kept_dim_from_sparsity_matches_slicegpt(sparsity, expected):
    # int((1 - s) * 576) rounded down to a multiple of 8, as SliceGPT's run script.
    assert kept_dim_from_sparsity(576, sparsity) == expected


def test_kept_dim_round_interval_is_configurable():
    assert kept_dim_from_sparsity(576, 0.3, round_to=1) == 403
    assert kept_dim_from_sparsity(576, 0.3, round_to=16) == 400
    with pytest.raises(ValueError):
        kept_dim_from_sparsity(576, 1.0)


def test_per_layer_schedule_layout():
    s = SlicingSchedule.per_layer([24, 16, 8], hidden_size=32, block_kind="sequential")
    assert s.embedding_dim == 24
    assert s.mid_dims == (24, 16, 8)
    assert s.out_dims == (16, 8, 32)  # the last layer writes D: head not sliced
    assert [s.input_dim(i) for i in range(3)] == [24, 16, 8]
    assert s.kept_dim is None
    assert list(s.dims()) == junction_names(3, "sequential")
    assert SlicingSchedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    head = SlicingSchedule.per_layer(
        [24, 16], hidden_size=32, block_kind="parallel", slice_head=True
    )
    assert head.mid_dims == () and head.out_dims == (16, 16) and head.head_dim == 16


def test_constant_schedule_and_validation():
    s = SlicingSchedule.constant(16, hidden_size=32, num_layers=2)
    assert s.kept_dim == 16 and s.head_dim == 32
    assert (
        SlicingSchedule.constant(16, hidden_size=32, num_layers=2, slice_head=True).head_dim == 16
    )
    with pytest.raises(ValueError, match="full width"):
        SlicingSchedule(32, "sequential", 16, (16, 16), (16, 16))
    with pytest.raises(ValueError, match="outside"):
        SlicingSchedule.constant(40, hidden_size=32, num_layers=2)


# --------------------------------------------------------------------- PCA
def test_second_moment_drops_padding_and_sorts_descending():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    m = SecondMoment(4)
    m.update(x, mask)
    kept = x[mask.bool()]
    torch.testing.assert_close(m.total, kept.T @ kept)
    assert m.num_tokens == int(mask.sum())
    values, basis, damp = m.pca()
    assert torch.all(values[:-1] >= values[1:])
    assert damp == pytest.approx(0.01 * torch.diagonal(kept.T @ kept).mean().item())
    # Columns are eigenvectors of the undamped moment with the reported eigenvalues.
    torch.testing.assert_close(m.total @ basis, basis * values, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(basis.T @ basis, torch.eye(4, dtype=torch.float64))


def test_random_orientation_keeps_the_subspace():
    gen = torch.Generator().manual_seed(3)
    r = random_orthogonal_upper_left(6, 4, gen)
    torch.testing.assert_close(r.T @ r, torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(r[4:, 4:], torch.eye(2, dtype=torch.float64))
    assert torch.all(r[:4, 4:] == 0) and torch.all(r[4:, :4] == 0)


# ------------------------------------------------------------------ fusion
@pytest.mark.parametrize("family", FAMILIES)
def test_fusion_preserves_logits_and_removes_norm_parameters(family):
    model = tiny_model(family)
    dense = logits(model, PROBE)
    norm_kind = get_adapter(model).facts.norm_kind
    info = fuse_model(model)
    assert info.center_embeddings == (norm_kind == "layer")
    assert info.untied_head == (family in ("llama-tied", "opt"))
    tol = fusion_tolerance(norm_kind)
    assert_logits_close(logits(model, PROBE), dense, rtol=tol, atol=tol)
    adapter = get_adapter(model)
    for path in adapter.norm_paths():
        norm = model.get_submodule(path)
        assert isinstance(norm, SlicedRMSNorm) and not list(norm.parameters())
        assert norm.full_width == adapter.facts.hidden_size
    assert all(isinstance(layer, SlicedBlockMixin) for layer in adapter.layers())
    assert adapter.head().weight is not adapter.embeddings()[0].weight
    assert model.config.tie_word_embeddings is False
    with pytest.raises(ValueError, match="already fused"):
        fuse_model(model)


def test_centring_embeddings_is_not_exact_for_rmsnorm_models():
    """Why RMSNorm models skip embedding mean subtraction by default (see fusion docs)."""
    model = tiny_model("llama")
    dense = logits(model, PROBE)
    fuse_model(model, center_embeddings=True)
    assert (logits(model, PROBE) - dense).abs().max() > 1e-3


def test_layernorm_stream_is_centred_after_fusion():
    model = tiny_model("opt")
    fuse_model(model)
    adapter = get_adapter(model)
    captured = []
    hook = adapter.layers()[1].register_forward_pre_hook(lambda m, a: captured.append(a[0]))
    logits(model, PROBE)
    hook.remove()
    assert captured[0].mean(-1).abs().max() < 1e-12


# ----------------------------------------------------- the algorithm itself
def _two_pass_reference(model, tokens, kept_dim):
    """SliceGPT's rotate_and_slice_sequential, literally: each layer runs twice.

    Written against our primitives so that only the pass structure differs from
    :func:`slice_model`.
    """
    fuse_model(model)
    adapter = get_adapter(model)
    dtype = torch.float64
    hidden = adapter.facts.hidden_size
    eigen = []
    xs, kwargs = capture_layer0_inputs(model, adapter, [(tokens, None)])

    def pca(signal):
        m = SecondMoment(hidden)
        m.update(signal)
        values, q, _ = m.pca()
        eigen.append(values / m.num_tokens)
        return q

    q = pca(xs[0])
    rotate_embeddings(adapter, q, kept_dim)
    x = xs[0] @ q[:, :kept_dim]
    layers = adapter.layers()
    for idx, layer in enumerate(layers):
        d_out = hidden if idx == len(layers) - 1 else kept_dim
        rotate_readers(adapter.attention_inputs(layer), q, kept_dim)
        set_shortcut(layer, "attn_shortcut", q[:, :kept_dim].T, dtype)
        mids: list[torch.Tensor] = []
        hook = adapter.mlp_norm(layer).register_forward_pre_hook(
            lambda m, a, store=mids: store.append(a[0])
        )
        with torch.no_grad():
            layer(x, **kwargs[0])  # pass 1: the mid-block signal
        hook.remove()
        q_mid = pca(mids[0])
        set_shortcut(layer, "attn_shortcut", shortcut(q, kept_dim, q_mid, kept_dim), dtype)
        rotate_writer(adapter.attention_output(layer), q_mid, kept_dim)
        rotate_readers(adapter.mlp_inputs(layer), q_mid, kept_dim)
        set_shortcut(layer, "mlp_shortcut", q_mid[:, :kept_dim].T, dtype)
        with torch.no_grad():
            out = layer(x, **kwargs[0])  # pass 2: the whole layer again
        q_out = pca(out)
        set_shortcut(layer, "mlp_shortcut", shortcut(q_mid, kept_dim, q_out, d_out), dtype)
        rotate_writer(adapter.mlp_output(layer), q_out, d_out)
        x = out @ q_out[:, :d_out]
        q = q_out
    rotate_readers([adapter.head()], q, hidden)
    return eigen


@pytest.mark.parametrize("family", ["llama", "opt", "phi3"])
def test_one_pass_per_half_equals_the_two_pass_reference(family):
    kept = 16
    ours = tiny_model(family)
    result = slice_model(
        ours, CALIBRATION, kept_dim=kept, batch_size=len(CALIBRATION), progress=False
    )
    reference = tiny_model(family)
    eigen = _two_pass_reference(reference, CALIBRATION, kept)
    assert len(eigen) == len(result.spectra)
    for spectrum, values in zip(result.spectra, eigen):
        np.testing.assert_allclose(spectrum.eigenvalues, values.numpy(), rtol=1e-8, atol=1e-10)
    assert_logits_close(logits(ours, PROBE), logits(reference, PROBE), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("family", FAMILIES)
def test_sliced_shapes_follow_the_schedule(family):
    model = tiny_model(family)
    facts = get_adapter(model).facts
    dims = [24, 16]
    result = slice_model(model, CALIBRATION, kept_dim=dims, progress=False)
    schedule = result.schedule
    adapter = get_adapter(model)
    for embedding in adapter.embeddings():
        assert embedding.weight.shape[1] == 24
    for i, layer in enumerate(adapter.layers()):
        d_in, d_mid, d_out = schedule.input_dim(i), schedule.mid_dim(i), schedule.out_dim(i)
        assert all(lin.in_features == d_in for lin in adapter.attention_inputs(layer))
        mlp_reads = d_mid if facts.block_kind == "sequential" else d_in
        assert all(lin.in_features == mlp_reads for lin in adapter.mlp_inputs(layer))
        assert adapter.mlp_output(layer).out_features == d_out
        if facts.block_kind == "sequential":
            assert adapter.attention_output(layer).out_features == d_mid
            assert layer.attn_shortcut.shape == (d_in, d_mid)
            assert layer.mlp_shortcut.shape == (d_mid, d_out)
        else:
            assert adapter.attention_output(layer).out_features == d_out
            assert layer.attn_shortcut.shape == (d_in, d_out)
            assert layer.mlp_shortcut is None
    assert adapter.head().in_features == facts.hidden_size
    widths = list(schedule.dims().values())
    assert result.parameter_count() == sliced_parameter_count(facts, widths)
    assert torch.isfinite(logits(model, PROBE)).all()


def test_result_records_spectra_and_timings():
    model = tiny_model("llama")
    result = slice_model(model, CALIBRATION, sparsity=0.5, round_to=8, progress=False)
    assert result.kept_dim == 16
    names = [s.name for s in result.spectra]
    assert names == junction_names(2, "sequential")
    for s in result.spectra:
        assert s.num_tokens == CALIBRATION.numel()
        assert np.all(np.diff(s.eigenvalues) <= 0)
        assert s.eigenvalues.dtype == np.float64 and s.eigenvalues.shape == (32,)
        assert 0 < s.retained_energy() <= 1
    assert result.spectra[-1].kept_dim == 32  # head not sliced
    assert len(result.layer_seconds) == 2 and result.total_seconds > 0
    assert result.calibration == {
        "num_windows": 6,
        "seqlen": 16,
        "num_tokens": 96,
        "batch_size": 16,
    }
    assert "d=16" in result.summary()


def test_padding_is_masked_out_of_every_pca():
    """Right padding never reaches a PCA: same spectra as the unpadded windows."""
    plain = tiny_model("opt")
    result = slice_model(plain, CALIBRATION, kept_dim=16, progress=False)
    padded_tokens = torch.cat([CALIBRATION, random_tokens(128, 6, 5, seed=99)], dim=1)
    mask = torch.ones_like(padded_tokens)
    mask[:, CALIBRATION.shape[1] :] = 0
    padded = tiny_model("opt")
    result_padded = slice_model(
        padded, padded_tokens, attention_mask=mask, kept_dim=16, progress=False
    )
    for a, b in zip(result.spectra, result_padded.spectra):
        assert a.num_tokens == b.num_tokens
        np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-9, atol=1e-12)
    assert_logits_close(logits(padded, PROBE), logits(plain, PROBE), rtol=1e-8, atol=1e-8)


def test_random_orientation_keeps_spectra_and_retained_subspace():
    pca = tiny_model("llama")
    a = slice_model(pca, CALIBRATION, kept_dim=16, progress=False, record_second_moments=True)
    rnd = tiny_model("llama")
    b = slice_model(
        rnd,
        CALIBRATION,
        kept_dim=16,
        orientation="random",
        seed=5,
        progress=False,
        record_second_moments=True,
    )
    for sa, sb in zip(a.spectra, b.spectra):
        np.testing.assert_allclose(sa.eigenvalues, sb.eigenvalues, rtol=1e-8, atol=1e-10)
        d = sa.kept_dim
        pa = sa.basis[:, :d] @ sa.basis[:, :d].T
        pb = sb.basis[:, :d] @ sb.basis[:, :d].T
        np.testing.assert_allclose(pa, pb, atol=1e-8)
    assert not np.allclose(a.spectra[0].basis[:, :16], b.spectra[0].basis[:, :16])
    # Rotating within the kept subspace is invisible to the network.
    assert_logits_close(logits(rnd, PROBE), logits(pca, PROBE), rtol=1e-8, atol=1e-8)


def test_head_slicing():
    model = tiny_model("phi")
    facts = get_adapter(model).facts
    result = slice_model(model, CALIBRATION, kept_dim=16, slice_head=True, progress=False)
    adapter = get_adapter(model)
    assert adapter.head().in_features == 16
    assert adapter.mlp_output(adapter.layers()[-1]).out_features == 16
    assert result.parameter_count() == sliced_parameter_count(facts, 16, slice_head=True)


def test_tied_head_is_cloned_not_shared():
    model = tiny_model("llama-tied")
    facts = get_adapter(model).facts
    result = slice_model(model, CALIBRATION, kept_dim=16, progress=False)
    assert result.facts.tied_embeddings  # facts of the dense parent
    assert result.parameter_count() == sliced_parameter_count(facts, 16)


def test_schedule_arguments_are_exclusive():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="one of"):
        slice_model(model, CALIBRATION, progress=False)
    with pytest.raises(ValueError, match="only one"):
        slice_model(
            model,
            CALIBRATION,
            kept_dim=16,
            schedule=SlicingSchedule.constant(16, hidden_size=32, num_layers=2),
            progress=False,
        )
    with pytest.raises(ValueError, match="orientation"):
        slice_model(model, CALIBRATION, kept_dim=16, orientation="svd", progress=False)


def test_a_sliced_model_cannot_be_sliced_again():
    model = tiny_model("llama")
    slice_model(model, CALIBRATION, kept_dim=16, progress=False)
    with pytest.raises(ValueError, match="already"):
        slice_model(model, CALIBRATION, kept_dim=8, progress=False)


def test_slicing_a_model_fused_beforehand():
    model = tiny_model("phi")
    dense = logits(model, PROBE)
    fuse_model(model)
    slice_model(model, CALIBRATION, kept_dim=32, progress=False)
    assert_logits_close(logits(model, PROBE), dense, rtol=1e-9, atol=1e-9)


def test_hidden_states_are_still_captured_by_hf():
    model = tiny_model("llama")
    slice_model(model, CALIBRATION, kept_dim=16, progress=False)
    out = model(input_ids=PROBE, output_hidden_states=True, use_cache=False)
    assert len(out.hidden_states) == 3
    assert out.hidden_states[1].shape[-1] == 16


# ------------------------------------------------------------ save and load
def test_save_and_load_rebuild_the_model(tmp_path):
    model = tiny_model("opt")
    result = slice_model(model, CALIBRATION, kept_dim=[24, 16], progress=False)
    expected = logits(model, PROBE)
    path = result.save(tmp_path / "cell", metadata={"corpus": "random", "seed": 11})
    config = json.loads((path / "slicing.json").read_text())
    assert config["schedule"] == result.schedule.to_dict()
    assert config["architecture"] == "OPTForCausalLM"
    loaded = load_sliced(path)
    assert torch.equal(logits(loaded.model, PROBE), expected)
    assert loaded.schedule == result.schedule
    assert loaded.facts == result.facts
    assert loaded.fusion == result.fusion
    assert loaded.metadata == {"corpus": "random", "seed": 11}
    for s in result.spectra:
        np.testing.assert_array_equal(loaded.eigenvalues[s.name], s.eigenvalues)
    assert sum(p.numel() for p in loaded.model.parameters()) == result.parameter_count()


def test_load_rejects_other_directories(tmp_path):
    with pytest.raises(ToolkitError, match="not a saved sliced model"):
        load_sliced(tmp_path)
    (tmp_path / "slicing.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ToolkitError, match="format"):
        load_sliced(tmp_path)


def test_eigendecomposition_is_the_same_single_or_multi_threaded():
    import measure.slicing.pca as pca

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 64, generator=gen, dtype=torch.float64)
    moment = pca.SecondMoment(64)
    moment.update(x)
    values, basis, _ = moment.pca()
    limit = pca.SINGLE_THREAD_EIGH_MAX_DIM
    try:
        pca.SINGLE_THREAD_EIGH_MAX_DIM = 8  # force the threaded path for width 64
        values_threaded, basis_threaded, _ = moment.pca()
    finally:
        pca.SINGLE_THREAD_EIGH_MAX_DIM = limit
    torch.testing.assert_close(values, values_threaded, rtol=1e-12, atol=1e-9)
    # eigenvectors agree up to sign
    overlap = (basis.T @ basis_threaded).diagonal().abs()
    torch.testing.assert_close(overlap, torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-8)
    assert torch.all(values[:-1] >= values[1:])


def test_offloading_calibration_activations_changes_nothing():
    """On the CPU the offload path is a no-op by construction; this runs its code and checks
    the option is accepted and gives the same model (the CUDA path moves batches only)."""
    import copy

    from measure.testing import random_tokens, tiny_model

    dense = tiny_model("llama", dtype=torch.float64, seed=2)
    tokens = random_tokens(dense.config.vocab_size, 4, 12, seed=3)
    a, b = copy.deepcopy(dense), copy.deepcopy(dense)
    slice_model(a, tokens, kept_dim=24, progress=False)
    slice_model(b, tokens, kept_dim=24, progress=False, offload_activations=True)
    probe = random_tokens(dense.config.vocab_size, 2, 12, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(
            a(input_ids=probe).logits, b(input_ids=probe).logits, rtol=0, atol=0
        )


def test_recording_bases_alone_keeps_the_same_bases_without_second_moments():
    import copy

    from measure.testing import random_tokens, tiny_model

    dense = tiny_model("llama", dtype=torch.float64, seed=5)
    tokens = random_tokens(dense.config.vocab_size, 4, 12, seed=6)
    full = slice_model(
        copy.deepcopy(dense), tokens, kept_dim=24, progress=False, record_second_moments=True
    )
    bases = slice_model(
        copy.deepcopy(dense), tokens, kept_dim=24, progress=False, record_bases=True
    )
    outs = slice_model(
        copy.deepcopy(dense), tokens, kept_dim=24, progress=False, record_bases=("out",)
    )
    for a, b, c in zip(full.spectra, bases.spectra, outs.spectra, strict=True):
        assert b.second_moment is None and a.second_moment is not None
        assert a.basis.shape == (32, 32) and b.basis.shape == (32, b.kept_dim)
        np.testing.assert_array_equal(a.basis[:, : b.kept_dim], b.basis)
        if c.position == "out":
            np.testing.assert_array_equal(c.basis, b.basis)
        else:
            assert c.basis is None
