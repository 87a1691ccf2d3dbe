"""Slicing invariants for every adapter family: d = D is exact, PCA beats random bases,
parameter counts match the closed form, save then load is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from measure.adapters import get_adapter
from measure.slicing import load_sliced, slice_model
from measure.testing import (
    FAMILIES,
    assert_logits_close,
    fusion_tolerance,
    logits,
    random_orthogonal,
    random_tokens,
    tiny_model,
)
from theory import sliced_parameter_count

pytestmark = pytest.mark.property
FAST = settings(max_examples=3, deadline=None)
CALIBRATION = random_tokens(128, 4, 12, seed=21)
PROBE = random_tokens(128, 2, 10, seed=22)
D = 32


@pytest.mark.parametrize("family", FAMILIES)
@FAST
@given(seed=st.integers(0, 999), orientation=st.sampled_from(["pca", "random"]))
def test_slicing_at_full_width_reproduces_dense_logits(family, seed, orientation):
    model = tiny_model(family, seed=seed)
    dense = logits(model, PROBE)
    result = slice_model(
        model, CALIBRATION, kept_dim=D, orientation=orientation, seed=seed, progress=False
    )
    tol = fusion_tolerance(result.facts.norm_kind)
    assert_logits_close(logits(model, PROBE), dense, rtol=tol, atol=tol)


@pytest.mark.parametrize("family", FAMILIES)
@FAST
@given(seed=st.integers(0, 999), kept=st.integers(1, D))
def test_pca_basis_retains_at_least_the_energy_of_a_random_basis(family, seed, kept):
    """At every junction and every d, the top-d PCA directions of the calibration
    activations hold at least as much energy as d random orthonormal directions."""
    model = tiny_model(family, seed=seed)
    result = slice_model(
        model, CALIBRATION, kept_dim=kept, record_second_moments=True, progress=False
    )
    for spectrum in result.spectra:
        h = spectrum.second_moment
        basis = spectrum.basis
        random = random_orthogonal(D, seed=seed).numpy()
        total = np.trace(h)
        for d in range(1, D + 1):
            pca = np.trace(basis[:, :d].T @ h @ basis[:, :d])
            rnd = np.trace(random[:, :d].T @ h @ random[:, :d])
            assert pca >= rnd - 1e-9 * total, (spectrum.name, d)
            # The basis used is the eigenbasis: its energy is the top-d eigenvalue sum.
            np.testing.assert_allclose(pca, spectrum.eigenvalues[:d].sum(), rtol=1e-8)


@pytest.mark.parametrize("family", FAMILIES)
@FAST
@given(
    dims=st.lists(st.integers(1, D), min_size=2, max_size=2),
    slice_head=st.booleans(),
)
def test_parameter_count_equals_closed_form(family, dims, slice_head):
    model = tiny_model(family)
    facts = get_adapter(model).facts
    result = slice_model(model, CALIBRATION, kept_dim=dims, slice_head=slice_head, progress=False)
    widths = list(result.schedule.dims().values())
    assert result.parameter_count() == sliced_parameter_count(facts, widths)
    if len(set(dims)) == 1:
        constant = sliced_parameter_count(facts, dims[0], slice_head=slice_head)
        assert result.parameter_count() == constant


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=2, deadline=None)
@given(dims=st.lists(st.integers(1, D), min_size=2, max_size=2), slice_head=st.booleans())
def test_save_then_load_is_exact(tmp_path_factory, family, dims, slice_head):
    model = tiny_model(family)
    result = slice_model(model, CALIBRATION, kept_dim=dims, slice_head=slice_head, progress=False)
    path = result.save(tmp_path_factory.mktemp("slice"))
    loaded = load_sliced(path)
    assert (logits(loaded.model, PROBE) == logits(model, PROBE)).all()
    assert loaded.schedule == result.schedule
