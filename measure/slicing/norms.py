"""The parameter-free RMSNorm that replaces every norm after fusion."""

from __future__ import annotations

import torch
from torch import nn


class SlicedRMSNorm(nn.Module):
    """``x / sqrt(sum(x**2) / D + eps)`` over the last axis, with no scale and no shift.

    ``D`` is the *original* hidden size, kept even when the stream is sliced to
    ``d < D`` columns: the sliced stream approximates the full one, whose squared
    norm it shares up to the discarded energy, so dividing by ``D`` (not ``d``)
    keeps the normalisation that the rest of the network was trained with
    (SliceGPT, Sec. 3.3; the reference ``RMSN`` does the same). At ``d = D`` this is
    exactly HF's RMSNorm with a unit scale.

    Parameters
    ----------
    full_width : the original hidden size ``D``.
    eps : the epsilon of the norm this module replaces.
    """

    def __init__(self, full_width: int, eps: float) -> None:
        super().__init__()
        self.full_width = int(full_width)
        self.eps = float(eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        dtype = hidden_states.dtype
        x = hidden_states.float() if dtype in (torch.float16, torch.bfloat16) else hidden_states
        mean_square = x.pow(2).sum(-1, keepdim=True) / self.full_width
        return (x * torch.rsqrt(mean_square + self.eps)).to(dtype)

    def extra_repr(self) -> str:
        return f"full_width={self.full_width}, eps={self.eps}"
