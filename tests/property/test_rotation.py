"""Rotation invariance of the fused residual stream, for every adapter family."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from measure.adapters import get_adapter
from measure.slicing import fuse_model, junction_names, rotate_model
from measure.testing import (
    FAMILIES,
    assert_logits_close,
    fusion_tolerance,
    logits,
    random_orthogonal,
    random_tokens,
    tiny_model,
)

pytestmark = pytest.mark.property
FAST = settings(max_examples=4, deadline=None)
PROBE = random_tokens(128, 2, 10, seed=3)


@pytest.mark.parametrize("family", FAMILIES)
@FAST
@given(seed=st.integers(0, 2**31 - 1), same_everywhere=st.booleans())
def test_random_orthogonal_rotation_leaves_logits_unchanged(family, seed, same_everywhere):
    """Rotating by Haar-random Q (one per junction, or one shared) without slicing."""
    model = tiny_model(family, seed=seed % 1000)
    dense = logits(model, PROBE)
    fuse_model(model)
    fused = logits(model, PROBE)
    facts = get_adapter(model).facts
    n = len(junction_names(facts.num_layers, facts.block_kind))
    if same_everywhere:
        bases = [random_orthogonal(facts.hidden_size, seed=seed)] * n
    else:
        bases = [random_orthogonal(facts.hidden_size, seed=seed + i) for i in range(n)]
    rotate_model(model, bases)
    rotated = logits(model, PROBE)
    assert_logits_close(rotated, fused, rtol=1e-9, atol=1e-9)
    tol = fusion_tolerance(facts.norm_kind)
    assert_logits_close(rotated, dense, rtol=tol, atol=tol)
