"""Fusion: make the residual stream rotation invariant (SliceGPT, Sec. 3.2-3.3).

Steps, in order (each one leaves the model's function unchanged unless noted):

1. Untie a tied head by cloning its weight: the embeddings and the head will be
   rotated on different sides.
2. LayerNorm models only: subtract the mean. Each embedding row is centred, and
   every linear that writes the residual stream (attention output, MLP output) gets
   ``W <- C W``, ``b <- C b`` with ``C = I - 11^T / D``. The stream is then centred
   at every point, so each LayerNorm's own mean subtraction is the identity and its
   variance equals the mean square: LayerNorm becomes RMSNorm. Exact.
3. Fold each norm's scale ``g`` (and shift ``b``) into the linears that read it:
   ``W <- W diag(g)``, ``bias <- bias + W b``. Exact. Parallel blocks fold their
   single norm into both the attention and the MLP inputs; the final norm goes
   into the head.
4. Replace every norm by :class:`~measure.slicing.norms.SlicedRMSNorm`, which has
   no parameters and divides by the original width ``D``. Exact (it keeps each
   norm's own epsilon).
5. Convert each decoder layer into a block with (identity) shortcut matrices.

RMSNorm models (Llama, Phi-3) skip step 2 by default: RMSNorm does not subtract
the mean, so centring the embeddings would change the function. The reference
implementation centres the embeddings of every model; ``center_embeddings=True``
reproduces that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from measure.adapters import DecoderAdapter, get_adapter
from measure.slicing.blocks import convert_block
from measure.slicing.norms import SlicedRMSNorm
from theory.architecture import ArchitectureFacts

#: Attributes set on a fused model (plain Python, not in the state dict).
FUSION_ATTRIBUTE = "_repdim_fusion"
DENSE_FACTS_ATTRIBUTE = "_repdim_dense_facts"


@dataclass(frozen=True)
class FusionInfo:
    """How a model was fused (recorded with every sliced model).

    Attributes
    ----------
    norm_kind : the original norm kind (``"rms"`` or ``"layer"``).
    center_embeddings : whether embedding rows were centred.
    bake_mean : whether residual writers were centred (LayerNorm models).
    untied_head : whether the head was tied and has been cloned.
    """

    norm_kind: str
    center_embeddings: bool
    bake_mean: bool
    untied_head: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fusion_info(model: nn.Module) -> FusionInfo | None:
    """The :class:`FusionInfo` of a fused model, ``None`` for a dense one."""
    return getattr(model, FUSION_ATTRIBUTE, None)


def dense_facts(model: nn.Module) -> ArchitectureFacts:
    """Architecture facts of the dense model this one came from.

    Fusion unties the head, so the live config of a fused model no longer says
    whether the dense model was tied; the dense facts are kept on the model.
    """
    facts = getattr(model, DENSE_FACTS_ATTRIBUTE, None)
    return facts if facts is not None else get_adapter(model).facts


@torch.no_grad()
def fold_norm_into_readers(norm: nn.Module, readers: Iterable[nn.Linear]) -> None:
    """``W <- W diag(g)`` and ``bias <- bias + W b`` for each reader (step 3)."""
    scale = getattr(norm, "weight", None)
    shift = getattr(norm, "bias", None)
    for linear in readers:
        dtype = linear.weight.dtype
        w = linear.weight.to(torch.float64)
        if isinstance(shift, torch.Tensor):
            b = w @ shift.to(torch.float64)
            if linear.bias is None:
                linear.bias = nn.Parameter(b.to(dtype), requires_grad=linear.weight.requires_grad)
            else:
                linear.bias.copy_((linear.bias.to(torch.float64) + b).to(dtype))
        if isinstance(scale, torch.Tensor):
            linear.weight.copy_((w * scale.to(torch.float64)).to(dtype))


@torch.no_grad()
def center_writer(linear: nn.Linear) -> None:
    """``W <- C W``, ``b <- C b`` with ``C = I - 11^T/D``: outputs have zero mean (step 2)."""
    dtype = linear.weight.dtype
    w = linear.weight.to(torch.float64)
    linear.weight.copy_((w - w.mean(dim=0, keepdim=True)).to(dtype))
    if linear.bias is not None:
        b = linear.bias.to(torch.float64)
        linear.bias.copy_((b - b.mean()).to(dtype))


@torch.no_grad()
def center_embedding(embedding: nn.Embedding) -> None:
    """Centre every row of an embedding table (step 2)."""
    dtype = embedding.weight.dtype
    w = embedding.weight.to(torch.float64)
    embedding.weight.copy_((w - w.mean(dim=1, keepdim=True)).to(dtype))


def prepare_fused_structure(adapter: DecoderAdapter) -> None:
    """Steps 4-5 and the untied config: the module layout of any fused model.

    Also used when loading a sliced model, on a freshly built (empty) model.
    """
    model = adapter.model
    width = adapter.facts.hidden_size
    for path in adapter.norm_paths():
        norm = model.get_submodule(path)
        if not isinstance(norm, SlicedRMSNorm):
            model.set_submodule(path, SlicedRMSNorm(width, adapter.norm_eps(norm)))
    for layer in adapter.layers():
        convert_block(layer, type(adapter))
    model.config.tie_word_embeddings = False


@torch.no_grad()
def fuse_model(model: nn.Module, *, center_embeddings: bool | None = None) -> FusionInfo:
    """Fuse norms into linears in place so that the stream is rotation invariant.

    Parameters
    ----------
    model : a dense HF causal-LM with a registered adapter.
    center_embeddings : centre the embedding rows. ``None`` (default) does so for
        LayerNorm models only, where it is part of the exact LayerNorm -> RMSNorm
        conversion; ``True`` also does it for RMSNorm models, as the reference
        implementation does (not function preserving there).

    Returns
    -------
    FusionInfo
        Also stored on the model; a second call raises ``ValueError``.
    """
    if fusion_info(model) is not None:
        raise ValueError("this model is already fused")
    adapter = get_adapter(model)
    facts = adapter.facts
    layer_norm = facts.norm_kind == "layer"
    if center_embeddings is None:
        center_embeddings = layer_norm

    # Step 1: untie.
    head = adapter.head()
    embedding_weights = {id(e.weight) for e in adapter.embeddings()}
    untied = id(head.weight) in embedding_weights
    if untied:
        head.weight = nn.Parameter(head.weight.detach().clone())

    # Step 2: mean subtraction, baked into everything that writes the stream.
    if center_embeddings:
        for embedding in adapter.embeddings():
            center_embedding(embedding)
    for layer in adapter.layers():
        if layer_norm:
            center_writer(adapter.attention_output(layer))
            center_writer(adapter.mlp_output(layer))
        # Step 3: fold norms into their readers.
        if facts.block_kind == "parallel":
            readers = adapter.attention_inputs(layer) + adapter.mlp_inputs(layer)
            fold_norm_into_readers(adapter.attention_norm(layer), readers)
        else:
            fold_norm_into_readers(adapter.attention_norm(layer), adapter.attention_inputs(layer))
            fold_norm_into_readers(adapter.mlp_norm(layer), adapter.mlp_inputs(layer))
    fold_norm_into_readers(adapter.final_norm(), [head])

    # Steps 4-5.
    prepare_fused_structure(adapter)
    info = FusionInfo(
        norm_kind=facts.norm_kind,
        center_embeddings=bool(center_embeddings),
        bake_mean=layer_norm,
        untied_head=untied,
    )
    setattr(model, FUSION_ATTRIBUTE, info)
    setattr(model, DENSE_FACTS_ATTRIBUTE, facts)
    return info
