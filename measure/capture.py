"""Activation flow of a sliced model against its dense parent, reduced as it streams.

The dense parent's residual stream at every block output and its logits are computed once
per sweep on the capture windows (:class:`DenseReference`) and kept in memory-mapped files,
so memory does not grow with the number of windows and every sliced cell reuses them.

For a sliced model, :func:`capture_flow` runs the same windows and reduces, per layer,

* ``residual_norm`` / ``residual_norm_dense``: mean L2 norm of the residual per token;
* ``residual_rel_error``: ``sqrt(sum ||h_s Q_dᵀ - h||² / sum ||h||²)``, where ``h_s`` is the
  sliced residual (``d`` columns) and ``Q_d`` the kept basis of that junction, so
  ``h_s Q_dᵀ`` is the sliced residual mapped back to the dense coordinates;
* ``residual_cosine``: mean over tokens of the cosine between ``h_s Q_dᵀ`` and ``h``;

and on the logits,

* ``kl_divergence`` (and per window): mean per-token ``KL(p_dense || p_sliced)``;
* ``top1_agreement``: share of tokens whose argmax agrees;
* ``entropy`` / ``entropy_dense``: mean entropy of the next-token distributions;
* ``logit_scale``: the least-squares ``τ`` in ``z_sliced ≈ τ · z_dense``, with both logit
  vectors centred per token first (softmax ignores a per-token shift).

The reference residual is the dense model's residual as the fused model carries it: equal to
the original for RMSNorm models, and centred (mean over the hidden dimension removed) for
LayerNorm models, whose fusion bakes the mean subtraction into the residual stream.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from measure.devices import input_device

if TYPE_CHECKING:
    import torch
    from torch import nn


def _layers(model) -> list:
    from measure.adapters import get_adapter

    return get_adapter(model).layers()


class _LayerOutputs:
    """Forward hooks that keep each decoder layer's output hidden states."""

    def __init__(self, layers) -> None:
        self.outputs: list = [None] * len(layers)
        self.handles = [
            layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)
        ]

    def _hook(self, index: int):
        def hook(_module, _args, output) -> None:
            self.outputs[index] = output[0] if isinstance(output, tuple) else output

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class DenseReference:
    """Dense residuals and logits on the capture windows, stored as memory maps.

    Attributes
    ----------
    directory : where ``residuals.npy`` (window, layer, token, D; float16), ``logits.npy``
        (window, token, vocab; float32) and ``windows.npy`` live.
    """

    directory: Path

    @property
    def windows(self) -> np.ndarray:
        return np.load(self.directory / "windows.npy")

    @property
    def residuals(self) -> np.ndarray:
        return np.load(self.directory / "residuals.npy", mmap_mode="r")

    @property
    def logits(self) -> np.ndarray:
        return np.load(self.directory / "logits.npy", mmap_mode="r")

    @property
    def meta(self) -> dict:
        return json.loads((self.directory / "meta.json").read_text())

    def residual_window(self, window: int) -> np.ndarray:
        """Dense residuals of one window, (layer, token, D), read and unmapped at once."""
        return _read_window(self.directory / "residuals.npy", window)

    def logits_window(self, window: int) -> np.ndarray:
        """Dense logits of one window, (token, vocab), read and unmapped at once."""
        return _read_window(self.directory / "logits.npy", window)

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        return (Path(directory) / "meta.json").is_file()

    @classmethod
    def compute(
        cls,
        model: nn.Module,
        windows: torch.Tensor,
        directory: str | os.PathLike[str],
        *,
        centre: bool,
        progress: bool = False,
    ) -> DenseReference:
        """Run the dense model once over ``windows`` and store what comparisons need.

        Written atomically: a temporary directory renamed into place when complete.
        """
        import torch
        from tqdm.auto import tqdm

        directory = Path(directory)
        if cls.exists(directory):
            return cls(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            layers = _layers(model)
            n, seqlen = windows.shape
            hidden = model.config.hidden_size
            vocab = model.get_output_embeddings().weight.shape[0]
            # Each window is written through a fresh memory map that is closed at once, so
            # mapped pages never accumulate in this process (memory stays flat in windows).
            _create(tmp / "residuals.npy", np.float16, (n, len(layers), seqlen, hidden))
            _create(tmp / "logits.npy", np.float32, (n, seqlen, vocab))
            hooks = _LayerOutputs(layers)
            device = input_device(model)
            try:
                with torch.inference_mode():
                    for i in tqdm(
                        range(n), desc="dense reference", disable=not progress, leave=False
                    ):
                        out = model(input_ids=windows[i : i + 1].to(device), use_cache=False)
                        _write_window(tmp / "logits.npy", i, out.logits[0].float().cpu().numpy())
                        stream = []
                        for h in hooks.outputs:
                            h = h[0].float()
                            if centre:
                                h = h - h.mean(dim=-1, keepdim=True)
                            stream.append(h.cpu().numpy().astype(np.float16))
                        _write_window(tmp / "residuals.npy", i, np.stack(stream))
            finally:
                hooks.remove()
            np.save(tmp / "windows.npy", windows.cpu().numpy())
            (tmp / "meta.json").write_text(
                json.dumps(
                    {"windows": n, "seqlen": seqlen, "layers": len(layers), "centre": centre}
                )
            )
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(directory)


def _create(path: Path, dtype, shape: tuple[int, ...]) -> None:
    array = np.lib.format.open_memmap(path, "w+", dtype, shape)
    del array


def _write_window(path: Path, window: int, values: np.ndarray) -> None:
    array = np.load(path, mmap_mode="r+")
    array[window] = values
    array.flush()
    del array


def _read_window(path: Path, window: int) -> np.ndarray:
    array = np.load(path, mmap_mode="r")
    values = np.array(array[window])
    del array
    return values


class FlowAccumulator:
    """Streaming sums for the activation-flow statistics (float64)."""

    def __init__(self, num_layers: int) -> None:
        zeros = lambda: np.zeros(num_layers)  # noqa: E731
        self.norm, self.norm_dense = zeros(), zeros()
        self.err2, self.dense2, self.cosine = zeros(), zeros(), zeros()
        self.tokens = 0
        self.kl = 0.0
        self.window_kl: list[float] = []
        self.top1 = 0.0
        self.entropy = 0.0
        self.entropy_dense = 0.0
        self.scale_num = 0.0
        self.scale_den = 0.0
        self.logit_tokens = 0

    def add_residual(self, layer: int, mapped: torch.Tensor, dense: torch.Tensor) -> None:
        """``mapped`` and ``dense``: (tokens, D) float tensors."""
        import torch

        mapped = mapped.double()
        dense = dense.double()
        norm_s = mapped.norm(dim=-1)
        norm_d = dense.norm(dim=-1)
        self.norm[layer] += norm_s.sum().item()
        self.norm_dense[layer] += norm_d.sum().item()
        self.err2[layer] += (mapped - dense).pow(2).sum().item()
        self.dense2[layer] += norm_d.pow(2).sum().item()
        cos = (mapped * dense).sum(-1) / torch.clamp(norm_s * norm_d, min=1e-30)
        self.cosine[layer] += cos.sum().item()

    def add_logits(self, sliced: torch.Tensor, dense: torch.Tensor) -> None:
        """``sliced`` and ``dense``: (tokens, vocab) logits of one window."""
        import torch

        sliced = sliced.double()
        dense = dense.double()
        logp_s = torch.log_softmax(sliced, dim=-1)
        logp_d = torch.log_softmax(dense, dim=-1)
        p_d = logp_d.exp()
        kl = (p_d * (logp_d - logp_s)).sum(-1)
        self.kl += kl.sum().item()
        self.window_kl.append(kl.mean().item())
        self.top1 += (sliced.argmax(-1) == dense.argmax(-1)).sum().item()
        self.entropy += -(logp_s.exp() * logp_s).sum().item()
        self.entropy_dense += -(p_d * logp_d).sum().item()
        zs = sliced - sliced.mean(-1, keepdim=True)
        zd = dense - dense.mean(-1, keepdim=True)
        self.scale_num += (zs * zd).sum().item()
        self.scale_den += (zd * zd).sum().item()
        self.logit_tokens += sliced.shape[0]

    def result(self) -> dict[str, np.ndarray | float]:
        tokens = max(self.tokens, 1)
        logit_tokens = max(self.logit_tokens, 1)
        return {
            "residual_norm": self.norm / tokens,
            "residual_norm_dense": self.norm_dense / tokens,
            "residual_rel_error": np.sqrt(self.err2 / np.maximum(self.dense2, 1e-300)),
            "residual_cosine": self.cosine / tokens,
            "kl_divergence": self.kl / logit_tokens,
            "window_kl_divergence": np.array(self.window_kl),
            "top1_agreement": self.top1 / logit_tokens,
            "entropy": self.entropy / logit_tokens,
            "entropy_dense": self.entropy_dense / logit_tokens,
            "logit_scale": self.scale_num / self.scale_den if self.scale_den else float("nan"),
        }


class ActivationWriter:
    """Streams mapped-back residuals of chosen layers into a chunked, compressed netCDF.

    One variable ``residual`` with dims ``(window, layer, token, component)``, one chunk
    per (window, layer), zlib level 4, at ``float16`` precision (rounded, stored as float32:
    netCDF has no 16-bit float) or full ``float32``; the ``precision`` attribute says which.
    The window dimension
    is unlimited, so memory does not grow with the number of windows. Written to a
    temporary name and renamed on :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        layers: list[int],
        seqlen: int,
        hidden_size: int,
        *,
        dtype: str = "float16",
    ) -> None:
        import netCDF4

        if dtype not in ("float16", "float32"):
            raise ValueError(f"activation dtype must be float16 or float32, got {dtype!r}")
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.layers = list(layers)
        self.handle = netCDF4.Dataset(self.tmp, "w")
        self.handle.createDimension("window", None)
        self.handle.createDimension("layer", len(self.layers))
        self.handle.createDimension("token", seqlen)
        self.handle.createDimension("component", hidden_size)
        self.handle.createVariable("layer", "i4", ("layer",))[:] = np.array(self.layers)
        # netCDF has no 16-bit float: float16 precision is kept by rounding to float16 and
        # storing as float32, whose zeroed low mantissa bits zlib then compresses away.
        self.round_to_half = dtype == "float16"
        self.var = self.handle.createVariable(
            "residual",
            "f4",
            ("window", "layer", "token", "component"),
            zlib=True,
            complevel=4,
            chunksizes=(1, 1, seqlen, hidden_size),
        )
        self.var.units = "activation"
        self.var.long_name = "sliced residual stream mapped back through Q_d, per layer output"
        self.var.precision = dtype
        self.count = 0

    def add(self, window: int, layer: int, mapped: np.ndarray) -> None:
        values = np.asarray(mapped, dtype=np.float32)
        if self.round_to_half:
            values = values.astype(np.float16).astype(np.float32)
        self.var[window, self.layers.index(layer)] = values
        self.count = max(self.count, window + 1)

    def close(self) -> Path:
        self.handle.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


def capture_flow(
    model: nn.Module,
    reference: DenseReference,
    bases: list[np.ndarray],
    *,
    progress: bool = False,
    writer: ActivationWriter | None = None,
) -> dict[str, np.ndarray | float]:
    """Compare a sliced ``model`` with the dense reference, window by window.

    ``bases[l]`` is the kept basis ``Q_d`` (``D × d_l``) of the junction at the output of
    layer ``l``, so that ``h_sliced @ bases[l].T`` is in the dense coordinates. With a
    ``writer``, the mapped-back residuals of its layers are stored as they stream.
    """
    import torch
    from tqdm.auto import tqdm

    layers = _layers(model)
    if len(bases) != len(layers):
        raise ValueError(f"need one basis per layer ({len(layers)}), got {len(bases)}")
    windows = torch.from_numpy(reference.windows)
    device = input_device(model)
    back = [torch.from_numpy(np.ascontiguousarray(b.T)).double() for b in bases]
    acc = FlowAccumulator(len(layers))
    hooks = _LayerOutputs(layers)
    try:
        with torch.inference_mode():
            for i in tqdm(
                range(windows.shape[0]), desc="activation flow", disable=not progress, leave=False
            ):
                out = model(input_ids=windows[i : i + 1].to(device), use_cache=False)
                dense = reference.residual_window(i)
                for j, h in enumerate(hooks.outputs):
                    mapped = h[0].double().cpu() @ back[j]
                    acc.add_residual(j, mapped, torch.from_numpy(dense[j]))
                    if writer is not None and j in writer.layers:
                        writer.add(i, j, mapped.numpy())
                acc.tokens += windows.shape[1]
                acc.add_logits(out.logits[0].cpu(), torch.from_numpy(reference.logits_window(i)))
    finally:
        hooks.remove()
    return acc.result()
