"""Property tests of the parameter counts on random small architectures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import (
    ArchitectureFacts,
    break_even_kept_dim,
    dense_parameter_count,
    kept_dim_from_sparsity,
    parameter_breakdown,
    sliced_parameter_count,
    sliced_parameter_polynomial,
)
from theory.counts import COMPONENTS, junction_count
from theory.testing import architecture_facts

pytestmark = pytest.mark.property
FAST = settings(max_examples=40, deadline=None)


@FAST
@given(facts=architecture_facts(), data=st.data(), slice_head=st.booleans())
def test_polynomial_equals_integer_count(
    facts: ArchitectureFacts, data: st.DataObject, slice_head: bool
) -> None:
    d = data.draw(st.integers(1, facts.hidden_size))
    poly = sliced_parameter_polynomial(facts, slice_head=slice_head)
    assert poly.eval(d) == sliced_parameter_count(facts, d, slice_head=slice_head)
    breakdown = parameter_breakdown(facts, d, slice_head=slice_head)
    assert set(breakdown) == set(COMPONENTS) and breakdown["norms"] == 0
    assert sum(breakdown.values()) == sliced_parameter_count(facts, d, slice_head=slice_head)


@FAST
@given(facts=architecture_facts())
def test_rotation_without_slicing_differs_from_dense_by_known_terms(
    facts: ArchitectureFacts,
) -> None:
    """At d = D the sliced model is the dense one plus shortcuts, minus norms, plus the
    cloned head of a tied model and the biases created by folding LayerNorm biases."""
    D, L, V = facts.hidden_size, facts.num_layers, facts.vocab_size
    sequential = facts.block_kind == "sequential"
    shortcuts = (2 if sequential else 1) * L * D * D
    norms = ((2 if sequential else 1) * L + 1) * D * (2 if facts.norm_kind == "layer" else 1)
    cloned_head = V * D if facts.tied_embeddings else 0
    folded = 0
    if facts.norm_kind == "layer":
        qkv = (facts.num_attention_heads + 2 * facts.num_key_value_heads) * facts.head_dim
        mlp_in = (2 if facts.gated_mlp else 1) * facts.intermediate_size
        folded += 0 if facts.attention_bias else L * qkv
        folded += 0 if facts.mlp_bias else L * mlp_in
        folded += 0 if facts.head_bias else V
    expected = dense_parameter_count(facts) + shortcuts - norms + cloned_head + folded
    assert sliced_parameter_count(facts, D) == expected
    assert sliced_parameter_count(facts, D, slice_head=True) == expected


@FAST
@given(facts=architecture_facts(), data=st.data())
def test_count_grows_with_d_and_slicing_the_head_never_adds(
    facts: ArchitectureFacts, data: st.DataObject
) -> None:
    d = data.draw(st.integers(1, facts.hidden_size))
    if d < facts.hidden_size:
        assert sliced_parameter_count(facts, d) < sliced_parameter_count(facts, d + 1)
    assert sliced_parameter_count(facts, d, slice_head=True) <= sliced_parameter_count(facts, d)


@FAST
@given(facts=architecture_facts())
def test_break_even_separates_shrinking_from_growing(facts: ArchitectureFacts) -> None:
    dense = dense_parameter_count(facts)
    d = break_even_kept_dim(facts)
    assert 0 <= d <= facts.hidden_size
    if d >= 1:
        assert sliced_parameter_count(facts, d) < dense
    if d < facts.hidden_size:
        assert sliced_parameter_count(facts, d + 1) >= dense


@FAST
@given(facts=architecture_facts(), data=st.data())
def test_constant_schedule_equals_explicit_widths(
    facts: ArchitectureFacts, data: st.DataObject
) -> None:
    d = data.draw(st.integers(1, facts.hidden_size))
    widths = [d] * (junction_count(facts) - 1) + [facts.hidden_size]
    assert sliced_parameter_count(facts, widths) == sliced_parameter_count(facts, d)


@FAST
@given(
    hidden=st.integers(16, 16384),
    sparsity=st.floats(0.0, 0.9),
    multiple=st.sampled_from([1, 8, 16, 64]),
)
def test_kept_dim_from_sparsity_rounds_down_to_a_multiple(
    hidden: int, sparsity: float, multiple: int
) -> None:
    target = int((1 - sparsity) * hidden)
    if target < multiple:
        with pytest.raises(ValueError):
            kept_dim_from_sparsity(hidden, sparsity, multiple)
        return
    d = kept_dim_from_sparsity(hidden, sparsity, multiple)
    assert d % multiple == 0
    assert target - multiple < d <= target
