"""Paired bootstrap over evaluation windows (perplexity) or items (accuracy).

Every cell of one ``(model, protocol, metric)`` holds the same windows or items in the
same order, so one resample of indices applies to all cells at once: the dense value and
the sliced values move together, and a prediction made from the resampled dense value is
compared with the sliced value of the same resample. This keeps the positive correlation
between cells that an independent resampling would destroy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["paired_bootstrap", "percentile_interval", "cell_statistic"]


def cell_statistic(units: np.ndarray, kind: str) -> np.ndarray:
    """The cell value from its units along the last axis: ``exp(mean)`` for ``ppl``, else mean."""
    mean = units.mean(axis=-1)
    return np.exp(mean) if kind == "ppl" else mean


def paired_bootstrap(matrix: Any, kind: str, *, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Resampled cell values, shape ``(cells, n_boot)``.

    Parameters
    ----------
    matrix : array_like, shape (cells, units)
        Per-window NLL (``kind="ppl"``) or per-item correctness (``kind="acc"``).
    kind : {"ppl", "acc"}
    n_boot : int
        Number of resamples.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Examples
    --------
    >>> nll = np.log([[20.0, 20.0, 20.0], [30.0, 31.0, 29.0]])
    >>> boot = paired_bootstrap(nll, "ppl", n_boot=5, seed=1)
    >>> boot.shape, bool(np.allclose(boot[0], 20.0))
    ((2, 5), True)
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        raise ValueError("the bootstrap needs a (cells, units) array with at least 2 units")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, matrix.shape[1], size=(n_boot, matrix.shape[1]))
    out = np.empty((matrix.shape[0], n_boot))
    for cell in range(matrix.shape[0]):
        out[cell] = cell_statistic(matrix[cell][index], kind)
    return out


def percentile_interval(samples: Any, alpha: float = 0.05, axis: int = -1) -> np.ndarray:
    """``(lower, upper)`` percentile interval along ``axis`` (stacked on a new first axis)."""
    samples = np.asarray(samples, dtype=np.float64)
    return np.nanquantile(samples, [alpha / 2, 1 - alpha / 2], axis=axis)
