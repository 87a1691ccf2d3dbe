"""Per-junction PCA of the residual stream (SliceGPT, Sec. 3.4 and Algorithm 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

#: Damping added to the diagonal before the eigendecomposition, as a fraction of the
#: mean diagonal (the reference's ``pca_calc``).
DAMPING = 0.01


#: Widths up to which the CPU eigendecomposition runs on one thread.
SINGLE_THREAD_EIGH_MAX_DIM = 1024


def _eigh(h: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` in float64, on the GPU where the second moment lives there.

    On the CPU, widths up to :data:`SINGLE_THREAD_EIGH_MAX_DIM` run on one thread: the
    threaded LAPACK driver spends its time in thread barriers there (on a busy 2-core
    machine one 576 x 576 call took 0.2-7 s with two threads and a steady 0.03 s with
    one). Larger widths (Llama-3: 4096) keep every thread, and on a CUDA device the
    decomposition runs on the device (still float64), as SliceGPT does; the results
    come back to the CPU.
    """
    if device.type == "cuda":
        values, vectors = torch.linalg.eigh(h.to(device))
        return values.cpu(), vectors.cpu()
    if h.shape[0] > SINGLE_THREAD_EIGH_MAX_DIM:
        return torch.linalg.eigh(h)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(h)
    finally:
        torch.set_num_threads(threads)


class SecondMoment:
    """Running uncentred second moment ``sum_t x_t x_t^T`` in float64.

    Padded tokens (mask 0) are dropped. The activations may arrive in any dtype;
    each batch's product is taken in float64.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._total: torch.Tensor | None = None
        self.num_tokens = 0

    @property
    def total(self) -> torch.Tensor:
        """The summed second moment (float64, on the CPU)."""
        if self._total is None:
            return torch.zeros(self.dim, self.dim, dtype=torch.float64)
        return self._total.cpu()

    def update(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        x = x.reshape(-1, self.dim)
        if mask is not None:
            x = x[mask.reshape(-1).to(device=x.device, dtype=torch.bool)]
        x = x.to(torch.float64)
        if self._total is None:  # accumulate on the activations' device
            self._total = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=x.device)
        self._total.addmm_(x.T, x)
        self.num_tokens += x.shape[0]

    def pca(self, damping: float = DAMPING) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Eigen-decomposition of the damped second moment.

        Returns
        -------
        eigenvalues : undamped eigenvalues of the *summed* second moment, descending.
        basis : orthonormal eigenvectors as columns, in the same order.
        damp : the absolute damping that was added to the diagonal.
        """
        if self.num_tokens == 0:
            raise ValueError("no calibration tokens reached this junction (all masked?)")
        h = self.total.clone()
        damp = damping * torch.diagonal(h).mean().item()
        h.diagonal().add_(damp)
        device = self._total.device if self._total is not None else torch.device("cpu")
        values, vectors = _eigh(h, device)
        order = torch.argsort(values, descending=True)
        values, vectors = values[order] - damp, vectors[:, order].contiguous()
        return values, vectors, damp


def random_orthogonal_upper_left(dim: int, kept: int, generator: torch.Generator) -> torch.Tensor:
    """``diag(R, I)`` with ``R`` a Haar-random orthogonal ``kept x kept`` block.

    Multiplying a PCA basis by it on the right keeps the retained subspace and
    orients it randomly (the reference's ``final_orientation='random'``).
    """
    a = torch.randn(kept, kept, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    signs = torch.sign(torch.diagonal(r))
    q = q * torch.where(signs == 0, torch.ones_like(signs), signs)
    out = torch.eye(dim, dtype=torch.float64)
    out[:kept, :kept] = q
    return out


def retained_energy(eigenvalues: np.ndarray, kept_dim: int) -> float:
    """Share of the trace in the top ``kept_dim`` of descending ``eigenvalues`` (negative
    round-off values count as zero)."""
    values = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    return float(values[:kept_dim].sum() / values.sum())


@dataclass
class JunctionSpectrum:
    """What the PCA at one junction measured.

    Attributes
    ----------
    name : junction name (``"embeddings"``, ``"layer.3.mid"``, ``"layer.3.out"``).
    layer : layer index, ``-1`` for the embeddings.
    position : ``"embeddings"``, ``"mid"`` or ``"out"``.
    eigenvalues : eigenvalues of the undamped uncentred second moment *per token*
        (``sum_t x x^T / num_tokens``), descending, float64.
    kept_dim : width kept at this junction.
    num_tokens : unmasked calibration tokens that reached the junction.
    damping : damping added to the summed second moment (absolute).
    second_moment : the per-token second moment (``D x D``), only when recorded.
    basis : the basis used (PCA eigenvectors, times the random orientation if any):
        all ``D`` columns with ``record_second_moments``, the ``kept_dim`` kept columns
        with ``record_bases``; ``None`` when not recorded.
    """

    name: str
    layer: int
    position: str
    eigenvalues: np.ndarray
    kept_dim: int
    num_tokens: int
    damping: float
    second_moment: np.ndarray | None = field(default=None, repr=False)
    basis: np.ndarray | None = field(default=None, repr=False)

    def retained_energy(self, kept_dim: int | None = None) -> float:
        """Fraction of the second moment's trace in the top ``kept_dim`` directions."""
        return retained_energy(self.eigenvalues, self.kept_dim if kept_dim is None else kept_dim)
