"""Decoder blocks with shortcut matrices on their residual connections.

After rotation the residual stream enters block ``l`` in basis ``Q_a`` (``d_a``
columns kept) and must leave it in basis ``Q_b``. The skip connection therefore
multiplies by the shortcut ``Q_a[:, :d_a]^T Q_b[:, :d_b]`` (SliceGPT, Sec. 3.4 and
Fig. 4). A sequential block has two shortcuts (around attention and around the
MLP); a parallel block (Phi-2) has one.

Blocks are converted in place: the live HF decoder layer keeps its submodules and
state-dict keys, and its class becomes a subclass of the original class whose
``forward`` adds the shortcuts. ``isinstance`` checks, HF output capture hooks and
the HF model's own forward (masks, rotary embeddings) therefore keep working.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

_CLASSES: dict[tuple[type, type], type] = {}


def _through(x: torch.Tensor, shortcut: torch.Tensor | None) -> torch.Tensor:
    return x if shortcut is None else torch.matmul(x, shortcut)


class SlicedBlockMixin:
    """Forward of a block whose residual connections carry shortcut matrices.

    ``attn_shortcut`` (``d_in x d_mid``; ``d_in x d_out`` for parallel blocks) and
    ``mlp_shortcut`` (``d_mid x d_out``) are parameters; ``None`` means identity.
    The family-specific arithmetic of each half comes from the adapter class.
    """

    _adapter_cls: ClassVar[Any]

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args:
            raise TypeError("sliced blocks take the hidden states positionally, the rest by name")
        ops = self._adapter_cls
        normed = self.get_submodule(ops.attention_norm_path)(hidden_states)
        attn = ops.attention_forward(self, normed, kwargs)
        if ops.block_kind == "parallel":
            mlp = ops.mlp_forward(self, normed)
            return attn + mlp + _through(hidden_states, self.attn_shortcut)
        mid = _through(hidden_states, self.attn_shortcut) + attn
        mlp = ops.mlp_forward(self, self.get_submodule(ops.mlp_norm_path)(mid))
        return _through(mid, self.mlp_shortcut) + mlp


def sliced_block_class(layer_cls: type, adapter_cls: type) -> type:
    """The (cached) subclass of ``layer_cls`` that uses :class:`SlicedBlockMixin`."""
    key = (layer_cls, adapter_cls)
    if key not in _CLASSES:
        _CLASSES[key] = type(
            f"Sliced{layer_cls.__name__}",
            (SlicedBlockMixin, layer_cls),
            {"_adapter_cls": adapter_cls, "__module__": __name__},
        )
    return _CLASSES[key]


def convert_block(layer: nn.Module, adapter_cls: type) -> nn.Module:
    """Make ``layer`` a sliced block in place (shortcuts start as identity)."""
    if isinstance(layer, SlicedBlockMixin):
        return layer
    layer.__class__ = sliced_block_class(type(layer), adapter_cls)
    layer.register_parameter("attn_shortcut", None)
    layer.register_parameter("mlp_shortcut", None)
    return layer
