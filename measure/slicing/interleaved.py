"""Interleaved layer-by-layer PCA, rotation and slicing (SliceGPT, Algorithm 1).

Each junction's PCA sees the calibration activations produced by the already
rotated and sliced earlier layers, as in the reference's ``rotate_and_slice``.

One pass per block half
-----------------------
The reference runs every sequential block twice over the calibration tokens: once
to read the mid-block junction, and once more, after the attention output and MLP
inputs have been rotated, to read the block output. Here each half runs once:

1. attention half on the sliced input ``x`` (attention inputs already rotated),
   with the attention output temporarily rotated by the full input basis ``Q_in``.
   In that basis the residual is ``[x, 0]``, so the mid junction is
   ``attn(norm(x)) + [x, 0]``: no projection back to the unrotated basis;
2. the PCA of that signal gives ``V`` with ``Q_mid = Q_in V``; the sliced mid stream
   is ``mid V[:, :d_mid]``, exactly what the final rotated attention output and the
   shortcut ``Q_in[:, :d_in]^T Q_mid[:, :d_mid]`` produce, so the attention half
   need not run again;
3. MLP half on that stream, the same way in the basis ``Q_mid``.

The eigenvalues do not depend on the basis a junction is measured in, and the
eigenvectors map back exactly (``Q = Q_prev V``, float64), so this is the
reference's computation, reordered. Parallel blocks (Phi-2) need one pass, as in
the reference.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from measure.adapters import DecoderAdapter, get_adapter
from measure.slicing.fusion import FusionInfo, dense_facts, fuse_model, fusion_info
from measure.slicing.pca import (
    DAMPING,
    JunctionSpectrum,
    SecondMoment,
    random_orthogonal_upper_left,
)
from measure.slicing.rotate import (
    is_rotated,
    model_dtype,
    module_device,
    rotate_embeddings,
    rotate_readers,
    rotate_writer,
    set_shortcut,
    shortcut,
)
from measure.slicing.schedule import SlicingSchedule
from theory.architecture import ArchitectureFacts

Orientation = Literal["pca", "random"]


class _StopForward(Exception):
    """Raised by the layer-0 hook once the inputs of the first block are captured."""


@dataclass
class SlicingResult:
    """A sliced model and what slicing measured.

    Attributes
    ----------
    model : the sliced HF causal-LM (modified in place from the input model).
    facts : architecture facts of the *original* dense model.
    schedule : kept width at every junction.
    fusion : how norms were fused.
    orientation : ``"pca"`` or ``"random"``.
    seed : seed of the random orientation.
    spectra : one :class:`~measure.slicing.pca.JunctionSpectrum` per junction,
        in stream order.
    layer_seconds : wall time spent on each layer (PCA, rotation, forward passes).
    total_seconds : wall time of the whole call (fusion included).
    calibration : ``{"num_windows", "seqlen", "num_tokens", "batch_size"}``.
    """

    model: nn.Module
    facts: ArchitectureFacts
    schedule: SlicingSchedule
    fusion: FusionInfo
    orientation: Orientation
    seed: int
    spectra: list[JunctionSpectrum]
    layer_seconds: list[float]
    total_seconds: float
    calibration: dict[str, int] = field(default_factory=dict)

    @property
    def kept_dim(self) -> int | None:
        return self.schedule.kept_dim

    def eigenvalues(self) -> dict[str, np.ndarray]:
        """Per-junction eigenvalues (per-token second moment, descending)."""
        return {s.name: s.eigenvalues for s in self.spectra}

    def parameter_count(self) -> int:
        """Parameters of the sliced model (shortcut matrices included)."""
        return sum(p.numel() for p in self.model.parameters())

    def save(self, directory: Any, *, metadata: dict[str, Any] | None = None) -> Any:
        """Write ``model.safetensors``, ``spectra.safetensors`` and ``slicing.json``."""
        from measure.slicing.io import save_sliced

        return save_sliced(self, directory, metadata=metadata)

    def summary(self) -> str:
        d = self.kept_dim
        width = f"d={d}" if d is not None else "per-layer d"
        return (
            f"{self.facts.architecture}: D={self.facts.hidden_size} -> {width}, "
            f"{self.parameter_count():,} parameters, orientation={self.orientation}, "
            f"{self.total_seconds:.1f} s"
        )


@torch.no_grad()
def capture_layer0_inputs(
    model: nn.Module,
    adapter: DecoderAdapter,
    batches: list[tuple[torch.Tensor, torch.Tensor | None]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Hidden states and keyword arguments the first block receives, per batch."""
    layer0 = adapter.layers()[0]
    store: dict[str, Any] = {}

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        store["hidden"] = args[0] if args else kwargs.pop("hidden_states")
        store["kwargs"] = dict(kwargs)
        raise _StopForward

    handle = layer0.register_forward_pre_hook(hook, with_kwargs=True)
    device = adapter.embeddings()[0].weight.device
    inputs, layer_kwargs = [], []
    try:
        for ids, mask in batches:
            if mask is not None:
                mask = mask.to(device)
            try:
                model(input_ids=ids.to(device), attention_mask=mask, use_cache=False)
            except _StopForward:
                pass
            else:  # pragma: no cover - the hook always fires
                raise RuntimeError("the first decoder layer was never called")
            inputs.append(store.pop("hidden"))
            layer_kwargs.append(store.pop("kwargs"))
    finally:
        handle.remove()
    return inputs, layer_kwargs


def _rotate_writer_temporarily(linear: nn.Linear, q: torch.Tensor) -> Callable[[], None]:
    """Rotate a residual writer by the full basis ``q`` for the calibration pass only.

    Returns a function that puts the original parameters back, so that the final
    rotation starts from the unrounded weights.
    """
    weight, bias = linear.weight, linear.bias
    rotate_writer(linear, q, q.shape[1])

    def restore() -> None:
        linear.weight, linear.bias = weight, bias
        linear.out_features = weight.shape[0]

    return restore


def _to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (tuples, lists, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _run_device(home: torch.device, device: torch.device | None) -> torch.device:
    """Where a module stored on ``home`` runs: ``device`` if it is stored on the CPU."""
    if device is not None and home.type == "cpu":
        return device
    return home


@contextlib.contextmanager
def _visiting(module: nn.Module, device: torch.device | None):
    """Run ``module`` on its execution device for the block, then move it home.

    A module stored on the CPU visits ``device`` (SliceGPT's layer-by-layer offload);
    a module on an accelerator stays where it is. Yields the execution device.
    """
    home = module_device(module)
    run = _run_device(home, device)
    if run != home:
        module.to(run)
    try:
        yield run
    finally:
        if run != home:
            module.to(home)


def _batches(
    tokens: torch.Tensor, attention_mask: torch.Tensor | None, batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    if tokens.dim() != 2:
        raise ValueError(f"calibration tokens must be [windows, seqlen], got {tuple(tokens.shape)}")
    if attention_mask is not None and attention_mask.shape != tokens.shape:
        raise ValueError("attention_mask must have the shape of the calibration tokens")
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        ids = tokens[start : start + batch_size]
        mask = None if attention_mask is None else attention_mask[start : start + batch_size]
        out.append((ids, mask))
    return out


@torch.no_grad()
def slice_model(
    model: nn.Module,
    calibration: torch.Tensor,
    *,
    kept_dim: int | list[int] | None = None,
    sparsity: float | None = None,
    schedule: SlicingSchedule | None = None,
    round_to: int = 8,
    slice_head: bool = False,
    orientation: Orientation = "pca",
    seed: int = 0,
    attention_mask: torch.Tensor | None = None,
    batch_size: int = 16,
    center_embeddings: bool | None = None,
    damping: float = DAMPING,
    record_second_moments: bool = False,
    record_bases: bool | tuple[str, ...] = False,
    offload_activations: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_layer: Callable[[int, float], None] | None = None,
) -> SlicingResult:
    """Fuse, rotate and slice ``model`` in place with SliceGPT.

    Parameters
    ----------
    model : a dense HF causal-LM with a registered adapter (or one already fused by
        :func:`~measure.slicing.fuse_model`).
    calibration : ``LongTensor[windows, seqlen]`` of calibration token ids.
    kept_dim, sparsity, schedule : the width to keep. Exactly one: a constant (or
        per-layer list of) ``d``; a sparsity ``s`` giving ``d = int((1-s) D)``
        rounded down to a multiple of ``round_to``; or a full schedule.
    slice_head : let the last layer and the head work at ``d`` too (default: the
        last layer writes, and the head reads, the full width ``D``).
    orientation : ``"pca"`` keeps the eigenvector basis; ``"random"`` rotates the
        kept subspace of every junction by a Haar-random orthogonal matrix.
    seed : seed of the random orientation.
    attention_mask : ``[windows, seqlen]`` with 0 on padding; padded tokens are
        passed to the model's attention mask and left out of every PCA.
    batch_size : calibration windows per forward call.
    center_embeddings : see :func:`~measure.slicing.fuse_model`.
    damping : added to the second moment's diagonal as a fraction of its mean.
    record_second_moments : also keep each junction's second moment and basis.
    record_bases : keep the kept columns ``Q[:, :d]`` (``D x d``) of each junction's basis,
        what mapping sliced activations back to the dense coordinates needs, without the
        second moments; ``True`` for every junction, or a tuple of positions
        (``"embeddings"``, ``"mid"``, ``"out"``) such as ``("out",)`` for the layer
        outputs only. ``record_second_moments`` keeps the full ``D x D`` bases instead.
    offload_activations : keep the calibration activations on the CPU between layers when
        the model is on an accelerator (each batch is moved to the device for its layer
        half); the arithmetic is unchanged.
    device : an accelerator on which layers stored on the CPU run while they are sliced:
        each is moved there for its turn and back afterwards (SliceGPT's layer-by-layer
        offload; the embeddings and head visit it for their rotation too). Layers on an
        accelerator run where they are, so a model spread over several GPUs is sliced
        layer by layer on each. Default: every layer runs where its weights are.
    progress : show a per-layer progress bar.
    on_layer : called with ``(layer_index, seconds)`` after each layer.

    Returns
    -------
    SlicingResult
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if orientation not in ("pca", "random"):
        raise ValueError(f"orientation must be 'pca' or 'random', got {orientation!r}")
    facts = dense_facts(model)
    if schedule is None:
        if kept_dim is None and sparsity is None:
            raise ValueError("give one of kept_dim, sparsity or schedule")
        schedule = SlicingSchedule.for_facts(
            facts, kept_dim=kept_dim, sparsity=sparsity, round_to=round_to, slice_head=slice_head
        )
    elif kept_dim is not None or sparsity is not None:
        raise ValueError("give only one of kept_dim, sparsity or schedule")
    if schedule.num_layers != facts.num_layers or schedule.hidden_size != facts.hidden_size:
        raise ValueError("the schedule does not match the model's layers or hidden size")
    if schedule.block_kind != facts.block_kind:
        raise ValueError("the schedule's block kind does not match the model")

    model.eval()
    fusion = fusion_info(model)
    if fusion is not None and is_rotated(model):
        raise ValueError("this model is already rotated or sliced; slice a fresh copy")
    if fusion is None:
        fusion = fuse_model(model, center_embeddings=center_embeddings)
    elif center_embeddings is not None and center_embeddings != fusion.center_embeddings:
        raise ValueError("the model is already fused with a different center_embeddings")
    adapter = get_adapter(model)
    dtype = model_dtype(model)
    hidden = facts.hidden_size
    generator = torch.Generator().manual_seed(seed)
    spectra: list[JunctionSpectrum] = []

    batches = _batches(calibration, attention_mask, batch_size)
    masks = [m for _, m in batches]
    xs, layer_kwargs = capture_layer0_inputs(model, adapter, batches)
    run_device = None if device is None else torch.device(device)
    layers = adapter.layers()
    kwargs_by_device: dict[torch.device, list[dict[str, Any]]] = {}

    def kwargs_on(where: torch.device) -> list[dict[str, Any]]:
        """The first block's keyword arguments (masks, rotary tables) on ``where``."""
        if where not in kwargs_by_device:
            kwargs_by_device[where] = [_to_device(k, where) for k in layer_kwargs]
        return kwargs_by_device[where]

    def stash(t: torch.Tensor) -> torch.Tensor:
        # With offloading, calibration activations wait on the CPU between layers and
        # each batch visits the device only while its layer half runs (same arithmetic).
        return t.to("cpu") if offload_activations else t

    num_tokens = 0

    def junction(moment, previous, name, layer, position, dim):
        """PCA of a junction measured in the ``previous`` basis; returns the new basis
        relative to ``previous`` and the absolute one (``previous @ relative``)."""
        nonlocal num_tokens
        values, relative, damp = moment.pca(damping)
        if orientation == "random":
            relative = relative @ random_orthogonal_upper_left(hidden, dim, generator)
        absolute = relative if previous is None else previous @ relative
        count = moment.num_tokens
        num_tokens = count
        second = None
        if record_second_moments:
            second = moment.total / count
            if previous is not None:  # back to the unrotated basis
                second = previous @ second @ previous.T
            second = second.numpy()
        basis = None
        if record_second_moments:
            basis = absolute.numpy().copy()
        elif record_bases is True or (record_bases and position in record_bases):
            basis = absolute[:, :dim].numpy().copy()
        spectra.append(
            JunctionSpectrum(
                name=name,
                layer=layer,
                position=position,
                eigenvalues=(values / count).numpy(),
                kept_dim=dim,
                num_tokens=count,
                damping=damp,
                second_moment=second,
                basis=basis,
            )
        )
        return relative, absolute

    # Embeddings junction (SliceGPT Alg. 1, line 2), measured where the first layer runs.
    first = _run_device(module_device(layers[0]), run_device)
    moment = SecondMoment(hidden)
    for x, mask in zip(xs, masks):
        moment.update(x.to(first), mask)
    d_in = schedule.embedding_dim
    _, q_in = junction(moment, None, "embeddings", -1, "embeddings", d_in)
    with contextlib.ExitStack() as visits:
        for embedding in adapter.embeddings():
            visits.enter_context(_visiting(embedding, run_device))
        rotate_embeddings(adapter, q_in, d_in)
    to_in = q_in[:, :d_in].to(device=first, dtype=dtype)
    xs = [stash(x.to(first) @ to_in) for x in xs]

    layer_seconds: list[float] = []
    bar = tqdm(layers, desc="slicing", unit="layer", disable=not progress, leave=False)
    for idx, layer in enumerate(bar):
        t0 = time.perf_counter()
        with _visiting(layer, run_device) as run:
            d_out = schedule.out_dim(idx)
            attn_norm = adapter.attention_norm(layer)
            attn_out, mlp_out = adapter.attention_output(layer), adapter.mlp_output(layer)
            if facts.block_kind == "sequential":
                d_mid = schedule.mid_dim(idx)
                rotate_readers(adapter.attention_inputs(layer), q_in, d_in)
                # Attention half, once, written in the input basis: there the residual
                # occupies the first d_in coordinates, so no projection is needed.
                restore = _rotate_writer_temporarily(attn_out, q_in)
                moment = SecondMoment(hidden)
                mids = []
                for i, (x, kwargs) in enumerate(zip(xs, kwargs_on(run))):
                    x = x.to(run)
                    mid = adapter.attention_forward(layer, attn_norm(x), kwargs)
                    mid[..., :d_in] += x
                    moment.update(mid, masks[i])
                    mids.append(stash(mid))
                    xs[i] = None  # free the layer input
                restore()
                rel_mid, q_mid = junction(moment, q_in, f"layer.{idx}.mid", idx, "mid", d_mid)
                rotate_writer(attn_out, q_mid, d_mid)
                rotate_readers(adapter.mlp_inputs(layer), q_mid, d_mid)
                set_shortcut(layer, "attn_shortcut", shortcut(q_in, d_in, q_mid, d_mid), dtype)
                # MLP half, once, on the sliced mid stream, written in the mid basis.
                to_mid = rel_mid[:, :d_mid].to(device=run, dtype=dtype)
                restore = _rotate_writer_temporarily(mlp_out, q_mid)
                mlp_norm = adapter.mlp_norm(layer)
                moment = SecondMoment(hidden)
                outs = []
                for i, mid in enumerate(mids):
                    mid_s = mid.to(run) @ to_mid
                    mids[i] = None
                    out = adapter.mlp_forward(layer, mlp_norm(mid_s))
                    out[..., :d_mid] += mid_s
                    moment.update(out, masks[i])
                    outs.append(stash(out))
                restore()
                rel_out, q_out = junction(moment, q_mid, f"layer.{idx}.out", idx, "out", d_out)
                rotate_writer(mlp_out, q_out, d_out)
                set_shortcut(layer, "mlp_shortcut", shortcut(q_mid, d_mid, q_out, d_out), dtype)
            else:
                rotate_readers(
                    adapter.attention_inputs(layer) + adapter.mlp_inputs(layer), q_in, d_in
                )
                restore_attn = _rotate_writer_temporarily(attn_out, q_in)
                restore_mlp = _rotate_writer_temporarily(mlp_out, q_in)
                moment = SecondMoment(hidden)
                outs = []
                for i, (x, kwargs) in enumerate(zip(xs, kwargs_on(run))):
                    x = x.to(run)
                    normed = attn_norm(x)
                    out = adapter.attention_forward(layer, normed, kwargs)
                    out += adapter.mlp_forward(layer, normed)
                    out[..., :d_in] += x
                    moment.update(out, masks[i])
                    outs.append(stash(out))
                    xs[i] = None
                restore_attn()
                restore_mlp()
                rel_out, q_out = junction(moment, q_in, f"layer.{idx}.out", idx, "out", d_out)
                rotate_writer(attn_out, q_out, d_out)
                rotate_writer(mlp_out, q_out, d_out)
                set_shortcut(layer, "attn_shortcut", shortcut(q_in, d_in, q_out, d_out), dtype)
            to_out = rel_out[:, :d_out].to(device=run, dtype=dtype)
            for i, out in enumerate(outs):
                xs[i] = stash(out.to(run) @ to_out)
                outs[i] = None
            q_in, d_in = q_out, d_out
        seconds = time.perf_counter() - t0
        layer_seconds.append(seconds)
        if on_layer is not None:
            on_layer(idx, seconds)
    bar.close()

    # Head reads the last junction (sliced only with slice_head).
    with _visiting(adapter.head(), run_device):
        rotate_readers([adapter.head()], q_in, schedule.head_dim)
    return SlicingResult(
        model=model,
        facts=facts,
        schedule=schedule,
        fusion=fusion,
        orientation=orientation,
        seed=seed,
        spectra=spectra,
        layer_seconds=layer_seconds,
        total_seconds=time.perf_counter() - start,
        calibration={
            "num_windows": int(calibration.shape[0]),
            "seqlen": int(calibration.shape[1]),
            "num_tokens": int(num_tokens),
            "batch_size": int(batch_size),
        },
    )
