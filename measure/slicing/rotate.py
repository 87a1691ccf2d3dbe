"""Rotation and slicing of a fused model (SliceGPT, Sec. 3.4 and Algorithm 1).

At a junction with orthogonal basis ``Q`` keeping ``d`` columns:

- writers of the stream get ``W <- Q[:, :d]^T W`` (and their bias likewise);
- readers of the stream get ``W <- W Q[:, :d]``;
- a residual connection from a junction ``a`` to a junction ``b`` gets the
  shortcut ``Q_a[:, :d_a]^T Q_b[:, :d_b]``.

Every linear is rotated exactly once: readers by the junction before them,
writers by the junction after them. The products are taken in float64 and cast
back to the model dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from measure.adapters import DecoderAdapter


def _kept(q: torch.Tensor, dim: int, device: torch.device | None = None) -> torch.Tensor:
    return q[:, :dim].to(device=device, dtype=torch.float64)


@torch.no_grad()
def rotate_readers(linears: list[nn.Linear], q: torch.Tensor, dim: int) -> None:
    """``W <- W Q[:, :d]``: the linears now read the rotated, sliced stream."""
    for linear in linears:
        w = linear.weight
        basis = _kept(q, dim, w.device)
        linear.weight = nn.Parameter(
            (w.to(torch.float64) @ basis).to(w.dtype).contiguous(), requires_grad=w.requires_grad
        )
        linear.in_features = dim


@torch.no_grad()
def rotate_writer(linear: nn.Linear, q: torch.Tensor, dim: int) -> None:
    """``W <- Q[:, :d]^T W``, ``b <- Q[:, :d]^T b``: the linear writes the rotated stream."""
    w = linear.weight
    basis = _kept(q, dim, w.device)
    linear.weight = nn.Parameter(
        (basis.T @ w.to(torch.float64)).to(w.dtype).contiguous(), requires_grad=w.requires_grad
    )
    if linear.bias is not None:
        b = linear.bias
        linear.bias = nn.Parameter(
            (basis.T @ b.to(torch.float64)).to(b.dtype), requires_grad=b.requires_grad
        )
    linear.out_features = dim


@torch.no_grad()
def rotate_embeddings(adapter: DecoderAdapter, q: torch.Tensor, dim: int) -> None:
    """``E <- E Q[:, :d]`` for the token (and position) embeddings."""
    for embedding in adapter.embeddings():
        w = embedding.weight
        basis = _kept(q, dim, w.device)
        embedding.weight = nn.Parameter(
            (w.to(torch.float64) @ basis).to(w.dtype).contiguous(), requires_grad=w.requires_grad
        )
        embedding.embedding_dim = dim


def shortcut(q_from: torch.Tensor, dim_from: int, q_to: torch.Tensor, dim_to: int) -> torch.Tensor:
    """``Q_a[:, :d_a]^T Q_b[:, :d_b]`` in float64."""
    return _kept(q_from, dim_from).T @ _kept(q_to, dim_to)


def module_device(module: nn.Module) -> torch.device:
    """Device of a module's first parameter (the CPU for a module without any)."""
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def set_shortcut(layer: nn.Module, name: str, value: torch.Tensor, dtype: torch.dtype) -> None:
    """Store a shortcut matrix on ``layer``, in ``dtype`` and on the layer's device."""
    value = value.to(device=module_device(layer), dtype=dtype).contiguous()
    layer.register_parameter(name, nn.Parameter(value, requires_grad=False))


def is_rotated(model: nn.Module) -> bool:
    """Whether any block of a fused model already carries a shortcut matrix."""
    return any(getattr(m, "attn_shortcut", None) is not None for m in model.modules())


def model_dtype(model: nn.Module) -> torch.dtype:
    return next(p for p in model.parameters() if p.is_floating_point()).dtype


@torch.no_grad()
def rotate_model(
    model: nn.Module,
    bases: list[torch.Tensor],
    dims: list[int] | None = None,
) -> None:
    """Rotate (and optionally slice) a fused model with given bases, without data.

    Parameters
    ----------
    model : a model fused by :func:`~measure.slicing.fuse_model`, not yet rotated.
    bases : one orthogonal ``D x D`` matrix per junction, in the order of
        :func:`~measure.slicing.schedule.junction_names`.
    dims : kept width per junction (same order); default: ``D`` everywhere (a pure
        rotation, which leaves the logits unchanged). The head reads the last
        junction at its kept width.
    """
    from measure.adapters import get_adapter
    from measure.slicing.fusion import fusion_info
    from measure.slicing.schedule import junction_names

    if fusion_info(model) is None:
        raise ValueError("rotate_model needs a fused model; call fuse_model first")
    if is_rotated(model):
        raise ValueError("this model is already rotated or sliced")
    adapter = get_adapter(model)
    facts = adapter.facts
    names = junction_names(facts.num_layers, facts.block_kind)
    if len(bases) != len(names):
        raise ValueError(f"need {len(names)} bases ({names[0]} ... {names[-1]}), got {len(bases)}")
    if dims is None:
        dims = [facts.hidden_size] * len(names)
    dtype = model_dtype(model)
    rotate_embeddings(adapter, bases[0], dims[0])
    j = 0
    for layer in adapter.layers():
        q_in, d_in = bases[j], dims[j]
        if facts.block_kind == "sequential":
            q_mid, d_mid = bases[j + 1], dims[j + 1]
            q_out, d_out = bases[j + 2], dims[j + 2]
            rotate_readers(adapter.attention_inputs(layer), q_in, d_in)
            rotate_writer(adapter.attention_output(layer), q_mid, d_mid)
            rotate_readers(adapter.mlp_inputs(layer), q_mid, d_mid)
            rotate_writer(adapter.mlp_output(layer), q_out, d_out)
            set_shortcut(layer, "attn_shortcut", shortcut(q_in, d_in, q_mid, d_mid), dtype)
            set_shortcut(layer, "mlp_shortcut", shortcut(q_mid, d_mid, q_out, d_out), dtype)
            j += 2
        else:
            q_out, d_out = bases[j + 1], dims[j + 1]
            rotate_readers(adapter.attention_inputs(layer) + adapter.mlp_inputs(layer), q_in, d_in)
            rotate_writer(adapter.attention_output(layer), q_out, d_out)
            rotate_writer(adapter.mlp_output(layer), q_out, d_out)
            set_shortcut(layer, "attn_shortcut", shortcut(q_in, d_in, q_out, d_out), dtype)
            j += 1
    rotate_readers([adapter.head()], bases[-1], dims[-1])
