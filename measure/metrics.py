"""Perplexity under the SliceGPT protocol.

1. Documents are joined by blank lines and tokenized once (:func:`measure.data.tokenize_texts`).
2. The tokens are cut into non-overlapping windows of ``seqlen``; the remainder is dropped
   (:func:`measure.data.evaluation_windows`).
3. Each window's NLL is the mean over its ``seqlen - 1`` next-token predictions, and
   ``PPL = exp(mean over windows of the window NLL)`` (``evaluate_ppl`` in SliceGPT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from measure.devices import input_device

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity with the per-window (and optionally per-token) NLL it was computed from."""

    ppl: float
    window_nll: np.ndarray  # (window,) mean NLL per window, nats
    token_nll: np.ndarray | None  # (window, seqlen - 1) or None
    seqlen: int

    @property
    def mean_nll(self) -> float:
        return float(self.window_nll.mean())


def perplexity(
    model,
    windows: torch.Tensor,
    *,
    batch_size: int = 4,
    keep_token_nll: bool = False,
    progress: bool = False,
    description: str = "perplexity",
) -> PerplexityResult:
    """Perplexity of ``model`` over token ``windows`` (shape ``(n, seqlen)``), SliceGPT style.

    NLL is computed in float32 from the model's logits whatever the model dtype.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] < 2:
        raise ValueError(
            f"windows must have shape (n >= 1, seqlen >= 2), got {tuple(windows.shape)}"
        )
    device = input_device(model)
    window_nll: list[np.ndarray] = []
    token_nll: list[np.ndarray] = []
    starts = range(0, windows.shape[0], batch_size)
    with torch.inference_mode():
        for start in tqdm(
            starts, desc=description, unit="batch", disable=not progress, leave=False
        ):
            batch = windows[start : start + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits[:, :-1, :].float()
            nll = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                batch[:, 1:].reshape(-1).to(logits.device),  # the head may be elsewhere
                reduction="none",
            ).view(batch.shape[0], -1)
            window_nll.append(nll.mean(dim=1).double().cpu().numpy())
            if keep_token_nll:
                token_nll.append(nll.cpu().numpy())
    per_window = np.concatenate(window_nll)
    return PerplexityResult(
        ppl=math.exp(float(per_window.mean())),
        window_nll=per_window,
        token_nll=np.concatenate(token_nll) if keep_token_nll else None,
        seqlen=int(windows.shape[1]),
    )
