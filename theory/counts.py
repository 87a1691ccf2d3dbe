"""Exact parameter and FLOP counts of dense and SliceGPT-sliced models.

Junctions and widths
--------------------
SliceGPT (arXiv 2401.15024) rotates the residual stream at every *junction* and keeps
its first ``d`` principal directions there. A sequential block (attention, then MLP)
has two junctions per layer (after attention, after the MLP); a parallel block (Phi-2)
has one. With the junction after the embedding this gives ``2L + 1`` (sequential) or
``L + 1`` (parallel) junction widths ``w_0 .. w_J``; the last one is the width the head
reads. A constant schedule has every width equal to ``d``, except the last, which
stays ``D`` unless the head is sliced (SliceGPT's default leaves it unsliced).

Parameter accounting of a sliced model
--------------------------------------
- token embedding ``V w_0``; learned position embedding ``P w_0`` (OPT);
- attention inputs read ``w_in``: ``w_in (H + 2 KV) hd`` (+ ``(H + 2 KV) hd`` biases);
  attention output writes ``w_mid`` (sequential) or ``w_out`` (parallel): ``H hd w``
  (+ ``w`` bias);
- MLP input reads ``w_mid`` (sequential) or ``w_in`` (parallel): ``w (2I or I)``
  (+ bias of the output width); MLP output ``I w_out`` (+ ``w_out`` bias);
- shortcut matrices ``Q_a^T Q_b`` wherever the residual passes a block: two per
  sequential layer (``w_in x w_mid`` and ``w_mid x w_out``), one per parallel layer
  (``w_in x w_out``); a rotated but unsliced model (``d = D``) has them too;
- norms are folded into the adjacent linears and become parameter-free RMSNorm: 0.
  LayerNorm biases fold into the biases of the linears that read the norm, which are
  created where missing (SliceGPT's ``fuse_ln_linear``);
- head ``V w_J`` (+ ``V`` bias). The sliced model's head is always untied: a tied
  dense head is cloned, so the embedding and head are counted separately.

The dense model counts its norms (``D`` weights each, plus ``D`` biases for LayerNorm;
two per sequential layer, one per parallel layer, one final) and has no shortcuts; a
tied head adds no weights.

FLOP convention
---------------
Forward FLOPs per token count 2 FLOPs per multiply-accumulate of every matrix product:
each linear layer (``2 * in * out``), each shortcut matrix, and the head (also when tied).
Attention adds ``2 n H hd`` for the scores and ``2 n H hd`` for the weighted values per
layer, where ``n`` (``context_length``) is the number of positions the token attends
to (use ``(T + 1) / 2`` for the mean over a causal window of ``T`` tokens). Embedding
lookups cost 0; biases, norms, activations, softmax, rotary embeddings and residual
additions are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from theory.architecture import ArchitectureFacts
from theory.symbols import context_length, kept_dim

__all__ = [
    "COMPONENTS",
    "Width",
    "junction_count",
    "junction_widths",
    "parameter_breakdown",
    "dense_parameter_count",
    "sliced_parameter_count",
    "sliced_parameter_polynomial",
    "dense_flops_per_token",
    "sliced_flops_per_token",
    "sliced_flops_polynomial",
    "break_even_kept_dim",
    "kept_dim_from_sparsity",
    "sparsity_from_kept_dim",
]

#: A junction width: an int, or a sympy expression such as the symbol ``kept_dim``.
Width = int | sp.Expr

#: Keys of :func:`parameter_breakdown`, in order.
COMPONENTS = ("embedding", "attention", "mlp", "shortcuts", "norms", "head")


def junction_count(facts: ArchitectureFacts) -> int:
    """Number of residual junctions: ``2L + 1`` (sequential) or ``L + 1`` (parallel).

    Examples
    --------
    >>> from theory.architecture import LLAMA3_8B
    >>> junction_count(LLAMA3_8B)
    65
    """
    per_layer = 2 if facts.block_kind == "sequential" else 1
    return per_layer * facts.num_layers + 1


def junction_widths(
    facts: ArchitectureFacts,
    kept_dim: Width | Sequence[Width],
    *,
    slice_head: bool | None = None,
) -> list[Width]:
    """The width of every junction under a constant or per-junction schedule.

    Parameters
    ----------
    facts : ArchitectureFacts
    kept_dim : int, sympy expression, or sequence
        A constant ``d``, or all :func:`junction_count` widths in order (the last one
        is the width the head reads).
    slice_head : bool, optional
        For a constant ``d``: whether the head is sliced too (default ``False``, as in
        SliceGPT). For a sequence it is implied by the last width; if given, it must
        agree with it.

    Examples
    --------
    >>> from theory.architecture import SMOLLM2_135M
    >>> w = junction_widths(SMOLLM2_135M, 512)
    >>> len(w), w[0], w[-2], w[-1]
    (61, 512, 512, 576)
    """
    D = facts.hidden_size
    n = junction_count(facts)
    if isinstance(kept_dim, Sequence) and not isinstance(kept_dim, str):
        widths = list(kept_dim)
        if len(widths) != n:
            raise ValueError(f"a per-junction schedule needs {n} widths, got {len(widths)}")
        if slice_head is not None:
            head_sliced = widths[-1] != D
            if bool(slice_head) != head_sliced:
                raise ValueError(
                    f"slice_head={slice_head} disagrees with the last width {widths[-1]}"
                )
    else:
        last = kept_dim if slice_head else D
        widths = [kept_dim] * (n - 1) + [last]
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, sp.Expr)):
            raise TypeError(f"junction widths must be ints or sympy expressions, got {w!r}")
        if isinstance(w, int) and not 1 <= w <= D:
            raise ValueError(f"junction widths must lie in [1, {D}], got {w}")
    return widths


def _linear(fan_in: Width, fan_out: Width, bias: bool) -> tuple[Width, Width]:
    return fan_in * fan_out, (fan_out if bias else 0)


def _breakdown(
    facts: ArchitectureFacts, widths: Sequence[Width], sliced: bool
) -> dict[str, tuple[Width, Width]]:
    """``{component: (weights, biases)}``; weights of the head are its matmul weights."""
    f = facts
    qkv_out = (f.num_attention_heads + 2 * f.num_key_value_heads) * f.head_dim
    attn_width = f.num_attention_heads * f.head_dim
    mlp_in_out = 2 * f.intermediate_size if f.gated_mlp else f.intermediate_size
    # Folding a LayerNorm's bias creates biases on the linears that read it.
    fused = sliced and f.norm_kind == "layer"
    parts: dict[str, list[Width]] = {c: [0, 0] for c in COMPONENTS}

    def add(component: str, weights: Width, biases: Width) -> None:
        parts[component][0] += weights
        parts[component][1] += biases

    add("embedding", (f.vocab_size + f.learned_positions) * widths[0], 0)
    sequential = f.block_kind == "sequential"
    for layer in range(f.num_layers):
        if sequential:
            w_in, w_mid, w_out = widths[2 * layer : 2 * layer + 3]
            attn_write, mlp_read = w_mid, w_mid
        else:
            w_in, w_out = widths[layer : layer + 2]
            attn_write, mlp_read = w_out, w_in
        add("attention", *_linear(w_in, qkv_out, f.attention_bias or fused))
        add("attention", *_linear(attn_width, attn_write, f.attention_output_bias))
        add("mlp", *_linear(mlp_read, mlp_in_out, f.mlp_bias or fused))
        add("mlp", *_linear(f.intermediate_size, w_out, f.mlp_bias))
        if sliced:
            if sequential:
                add("shortcuts", w_in * w_mid + w_mid * w_out, 0)
            else:
                add("shortcuts", w_in * w_out, 0)
    if not sliced:
        per_norm = f.hidden_size * (2 if f.norm_kind == "layer" else 1)
        norms_per_layer = 2 if sequential else 1
        add("norms", 0, (norms_per_layer * f.num_layers + 1) * per_norm)
    head_weights, head_bias = _linear(widths[-1], f.vocab_size, f.head_bias or fused)
    add("head", head_weights, head_bias)
    return {c: (w, b) for c, (w, b) in parts.items()}


def parameter_breakdown(
    facts: ArchitectureFacts,
    kept_dim: Width | Sequence[Width] | None = None,
    *,
    slice_head: bool | None = None,
) -> dict[str, Width]:
    """Parameters per component (``COMPONENTS``) of the dense or a sliced model.

    Parameters
    ----------
    facts : ArchitectureFacts
    kept_dim : int, sympy expression, sequence, or None
        ``None`` for the dense model; otherwise as in :func:`junction_widths`.
    slice_head : bool, optional
        As in :func:`junction_widths`.

    Examples
    --------
    >>> from theory.architecture import SMOLLM2_135M
    >>> parameter_breakdown(SMOLLM2_135M)["head"]  # tied: no extra weights
    0
    >>> parameter_breakdown(SMOLLM2_135M, 576)["head"]  # the sliced model clones it
    28311552
    """
    if kept_dim is None:
        widths: list[Width] = [facts.hidden_size] * junction_count(facts)
        parts = _breakdown(facts, widths, sliced=False)
        weights, biases = parts["head"]
        if facts.tied_embeddings:
            parts["head"] = (0, biases)
    else:
        widths = junction_widths(facts, kept_dim, slice_head=slice_head)
        parts = _breakdown(facts, widths, sliced=True)
    return {c: sp.expand(w + b) if _symbolic(w, b) else w + b for c, (w, b) in parts.items()}


def _symbolic(*values: Width) -> bool:
    return any(isinstance(v, sp.Basic) for v in values)


def dense_parameter_count(facts: ArchitectureFacts) -> int:
    """Exact parameter count of the dense model.

    Examples
    --------
    >>> from theory.architecture import LLAMA3_8B
    >>> dense_parameter_count(LLAMA3_8B)
    8030261248
    """
    return int(sum(parameter_breakdown(facts).values()))


def sliced_parameter_count(
    facts: ArchitectureFacts,
    kept_dim: int | Sequence[int],
    *,
    slice_head: bool = False,
) -> int:
    """Exact parameter count of the SliceGPT-sliced model.

    Parameters
    ----------
    facts : ArchitectureFacts
    kept_dim : int or sequence of int
        Constant kept width ``d``, or every junction width (see :func:`junction_widths`).
    slice_head : bool
        Slice the head too (constant ``d`` only; a schedule's last width decides).

    Examples
    --------
    >>> from theory.architecture import LLAMA3_8B
    >>> sliced_parameter_count(LLAMA3_8B, 3072)
    6775635968
    """
    if isinstance(kept_dim, Sequence):
        values = parameter_breakdown(facts, kept_dim).values()
    else:
        values = parameter_breakdown(facts, int(kept_dim), slice_head=slice_head).values()
    return int(sum(values))


def sliced_parameter_polynomial(
    facts: ArchitectureFacts, *, slice_head: bool = False, symbol: sp.Symbol = kept_dim
) -> sp.Poly:
    """Parameter count of the sliced model as an exact polynomial in ``d``.

    Examples
    --------
    >>> from theory.architecture import SMOLLM2_135M
    >>> sliced_parameter_polynomial(SMOLLM2_135M).degree()
    2
    """
    parts = parameter_breakdown(facts, symbol, slice_head=slice_head)
    return sp.Poly(sp.expand(sum(parts.values())), symbol)


def _flops(facts: ArchitectureFacts, widths: Sequence[Width], sliced: bool, n: Width) -> Width:
    parts = _breakdown(facts, widths, sliced=sliced)
    matmul = sum(w for c, (w, _) in parts.items() if c != "embedding")
    attention = 4 * n * facts.num_attention_heads * facts.head_dim * facts.num_layers
    return 2 * matmul + attention


def dense_flops_per_token(
    facts: ArchitectureFacts, context_length: Width = context_length
) -> Width:
    """Forward FLOPs per token of the dense model (module docstring: convention).

    Examples
    --------
    >>> from theory.architecture import SMOLLM2_135M
    >>> dense_flops_per_token(SMOLLM2_135M)
    69120*context_length + 268959744
    """
    widths = [facts.hidden_size] * junction_count(facts)
    return _simplify(_flops(facts, widths, sliced=False, n=context_length))


def sliced_flops_per_token(
    facts: ArchitectureFacts,
    kept_dim: Width | Sequence[Width],
    context_length: Width = context_length,
    *,
    slice_head: bool | None = None,
) -> Width:
    """Forward FLOPs per token of the sliced model, shortcut matrices included.

    ``kept_dim`` and ``context_length`` may be ints or sympy expressions; with ints
    the result is an int.

    Examples
    --------
    >>> from theory.architecture import SMOLLM2_135M
    >>> sliced_flops_per_token(SMOLLM2_135M, 576, 1) - dense_flops_per_token(SMOLLM2_135M, 1)
    39813120
    """
    widths = junction_widths(facts, kept_dim, slice_head=slice_head)
    return _simplify(_flops(facts, widths, sliced=True, n=context_length))


def sliced_flops_polynomial(
    facts: ArchitectureFacts, *, slice_head: bool = False, symbol: sp.Symbol = kept_dim
) -> sp.Poly:
    """Forward FLOPs per token of the sliced model as a polynomial in ``d`` and ``n``."""
    flops = sliced_flops_per_token(facts, symbol, context_length, slice_head=slice_head)
    return sp.Poly(flops, symbol, context_length)


def _simplify(value: Width) -> Width:
    return sp.expand(value) if isinstance(value, sp.Basic) else int(value)


def break_even_kept_dim(facts: ArchitectureFacts, *, slice_head: bool = False) -> int:
    """The largest constant ``d`` whose sliced model has fewer parameters than the dense one.

    The sliced count grows with ``d`` (all its coefficients are non-negative), so every
    smaller ``d`` removes parameters and every larger one does not; the shortcut
    matrices make the sliced model larger than the dense one for small sparsities.
    Returns 0 if no ``d >= 1`` removes parameters.

    Examples
    --------
    >>> from theory.architecture import LLAMA3_8B
    >>> d = break_even_kept_dim(LLAMA3_8B)
    >>> sliced_parameter_count(LLAMA3_8B, d) < dense_parameter_count(LLAMA3_8B)
    True
    >>> sliced_parameter_count(LLAMA3_8B, d + 1) >= dense_parameter_count(LLAMA3_8B)
    True
    """
    dense = dense_parameter_count(facts)
    lo, hi = 0, facts.hidden_size  # invariant: count(lo) < dense (lo = 0 vacuous)
    if sliced_parameter_count(facts, hi, slice_head=slice_head) < dense:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sliced_parameter_count(facts, mid, slice_head=slice_head) < dense:
            lo = mid
        else:
            hi = mid
    return lo


def kept_dim_from_sparsity(hidden_size: int, sparsity: float, multiple: int = 8) -> int:
    """SliceGPT's kept width: ``int((1 - s) D)``, rounded down to a multiple of ``multiple``.

    Examples
    --------
    >>> kept_dim_from_sparsity(4096, 0.25)
    3072
    >>> kept_dim_from_sparsity(576, 0.1)  # int(518.4) = 518 -> 512
    512
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    kept = int((1.0 - sparsity) * hidden_size)
    kept -= kept % multiple
    if kept < 1:
        raise ValueError(
            f"sparsity {sparsity} leaves no width of {hidden_size} at a multiple of {multiple}"
        )
    return kept


def sparsity_from_kept_dim(hidden_size: int, kept_dim: int) -> float:
    """``s = 1 - d/D``.

    Examples
    --------
    >>> sparsity_from_kept_dim(4096, 3072)
    0.25
    """
    return 1.0 - kept_dim / hidden_size
