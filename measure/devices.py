"""Devices for a sweep: memory caps, where inputs go, and slicing a dispatched model.

``--device-map auto`` loads a model through accelerate, which attaches hooks to its
modules: they move each module's inputs to its execution device and, for modules
offloaded to the CPU or to disk, keep the weights on the ``meta`` device and stream
them in at every call. SliceGPT rewrites the weights and the decoder blocks in place,
which those hooks get in the way of:

* a hook replaces ``module.forward`` on the instance, so the sliced block class that
  slicing swaps in would never be called;
* an offloaded module reloads its original weights at every call, so weights rotated
  in place would be thrown away.

:func:`undispatch` therefore removes the hooks and brings offloaded weights into host
memory (the model must fit in host RAM plus its GPUs, as SliceGPT's own layer-by-layer
offload assumes). Slicing then runs every layer on its execution device: a layer on a
GPU where it is, a layer that was offloaded on the map's main device, moved there for
its turn and back afterwards (:func:`measure.slicing.slice_model`'s ``device``).
:func:`redispatch` puts the hooks back with the same device map for evaluation; weights
mapped to ``disk`` are written to a fresh offload folder, since the sliced weights no
longer match the checkpoint.

Examples
--------
>>> parse_max_memory("0=20GiB,cpu=64GiB")
{0: '20GiB', 'cpu': '64GiB'}
>>> parse_max_memory('{"0": "20GiB", "cpu": "64GiB"}')
{0: '20GiB', 'cpu': '64GiB'}
>>> main_device({"model.embed_tokens": 0, "model.layers.0": 1, "lm_head": "cpu"})
device(type='cuda', index=0)
>>> main_device({"model.embed_tokens": "cpu", "model.layers": "disk"})
device(type='cpu')
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from measure.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """Per-device memory caps for ``device_map``: ``0=20GiB,cpu=64GiB`` or the same as JSON.

    Keys are GPU indices or ``cpu`` (or ``disk``); values are sizes such as ``20GiB``.
    """
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--max-memory is not valid JSON ({exc}).") from None
        if not isinstance(raw, dict):
            raise UsageError('--max-memory JSON must be an object such as {"0": "20GiB"}.')
        pairs = [(str(k), str(v)) for k, v in raw.items()]
    else:
        pairs = []
        for item in text.split(","):
            if "=" not in item:
                raise UsageError(
                    f"--max-memory expects DEVICE=SIZE pairs such as 0=20GiB,cpu=64GiB; got {item!r}."
                )
            key, value = item.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    caps: dict[int | str, str] = {}
    for key, value in pairs:
        device: int | str
        if key.isdigit():
            device = int(key)
        elif key in ("cpu", "disk", "mps"):
            device = key
        else:
            raise UsageError(f"--max-memory device must be a GPU index, cpu or disk; got {key!r}.")
        size_bytes(value)  # a malformed size is a usage error here, not after loading
        caps[device] = value.replace(" ", "")
    return caps


_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def size_bytes(text: str) -> int:
    """A ``--max-memory`` size in bytes, with accelerate's units (``GB`` = 10^9, ``GiB`` = 2^30).

    >>> size_bytes("20GiB"), size_bytes("500MB"), size_bytes("1024")
    (21474836480, 500000000, 1024)
    """
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$", str(text))
    unit = (match.group(2) or "B").upper() if match else ""
    if match is None or unit not in _UNITS:
        raise UsageError(f"--max-memory size must look like 20GiB or 500MB; got {text!r}.")
    return int(float(match.group(1)) * _UNITS[unit])


def is_dispatched(model: nn.Module) -> bool:
    """True when accelerate hooks are attached to ``model`` or any of its modules."""
    return any(hasattr(module, "_hf_hook") for module in model.modules())


def as_device(value: Any) -> torch.device:
    """A ``device_map`` value (GPU index, ``"cuda:1"``, ``"cpu"``, ...) as a torch device."""
    import torch

    if isinstance(value, int):
        return torch.device("cuda", value)
    if isinstance(value, str) and value.isdigit():
        return torch.device("cuda", int(value))
    return torch.device(value)


def main_device(device_map: dict[str, Any]) -> torch.device:
    """Where offloaded modules run: the first accelerator of the map, else the CPU.

    This is accelerate's own rule in ``dispatch_model``.
    """
    for value in device_map.values():
        if value not in ("cpu", "disk"):
            return as_device(value)
    return as_device("cpu")


def _hooks(module: nn.Module) -> list[Any]:
    """accelerate's hooks on ``module`` (a SequentialHook unpacked)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])


def input_device(model: nn.Module) -> torch.device:
    """The device that token ids must be on for ``model(input_ids=...)``.

    The input embedding's execution device: where its weights are, or, for an embedding
    offloaded by accelerate (weights on ``meta``), the device its hook runs it on.
    ``next(model.parameters()).device`` is wrong for such models.
    """
    import torch

    getter = getattr(model, "get_input_embeddings", None)
    if getter is None:  # not a transformers model: its first parameter decides
        return next((p.device for p in model.parameters()), torch.device("cpu"))
    embedding = getter()
    for hook in _hooks(embedding):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return as_device(device)
    weight = getattr(embedding, "weight", None)
    if weight is not None and not weight.is_meta:
        return weight.device
    return torch.device("cpu")


@dataclass(frozen=True)
class Dispatch:
    """What :func:`undispatch` removed: the device map and the map's main device."""

    device_map: dict[str, Any]
    main_device: torch.device

    @property
    def offloaded(self) -> bool:
        return any(value in ("cpu", "disk") for value in self.device_map.values())


def _materialise_offloaded(model: nn.Module) -> None:
    """Copy offloaded weights from accelerate's weights maps into host memory.

    Without this, removing the hooks leaves weights that ``from_pretrained`` offloaded on
    the ``meta`` device.
    """
    from accelerate.utils import set_module_tensor_to_device

    for module in model.modules():
        for hook in _hooks(module):
            weights = getattr(hook, "weights_map", None)
            if not getattr(hook, "offload", False) or weights is None:
                continue
            for name in list(getattr(hook, "original_devices", {}) or {}):
                owner, _, leaf = name.rpartition(".")
                tensor = getattr(module.get_submodule(owner) if owner else module, leaf)
                if tensor is None or not tensor.is_meta:
                    continue  # kept on the module (non-persistent buffers, for one)
                set_module_tensor_to_device(module, name, "cpu", value=weights[name])
            hook.offload = False  # the weights now live in the module itself


def undispatch(model: nn.Module) -> Dispatch | None:
    """Remove accelerate's hooks so that ``model`` can be sliced in place.

    Offloaded weights (``cpu`` or ``disk`` in the device map) are copied into host
    memory first. Returns what :func:`redispatch` needs after slicing, or ``None`` when
    the model was not dispatched.
    """
    if not is_dispatched(model):
        return None
    device_map = dict(getattr(model, "hf_device_map", None) or {})
    if not device_map:
        devices = sorted({str(p.device) for p in model.parameters() if not p.is_meta})
        device_map = {"": devices[0] if devices else "cpu"}
    _materialise_offloaded(model)
    from accelerate.hooks import remove_hook_from_module

    remove_hook_from_module(model, recurse=True)
    still_meta = sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.is_meta})
    if still_meta:
        shown = ", ".join(still_meta[:3]) + (" ..." if len(still_meta) > 3 else "")
        raise UsageError(
            f"{len(still_meta)} module(s) ({shown}) have no weights after removing "
            "accelerate's hooks (they were on the meta device without an offload map), so "
            "they cannot be sliced. Load the model with a device_map that keeps them on "
            "a device, the CPU or disk."
        )
    for module in model.modules():
        # accelerate restores the original forward as an instance attribute; that bound
        # method would shadow the sliced block class that slicing swaps in.
        bound = module.__dict__.get("forward")
        if getattr(bound, "__self__", None) is module and getattr(
            bound, "__func__", None
        ) is getattr(type(module), "forward", None):
            del module.__dict__["forward"]
    return Dispatch(device_map=device_map, main_device=main_device(device_map))


def redispatch(
    model: nn.Module, dispatch: Dispatch | None, *, offload_root: str | Path | None = None
) -> nn.Module:
    """Attach accelerate's hooks again with the same device map (a no-op for ``None``).

    Modules mapped to ``disk`` are written to a new offload folder ``.offload-*`` inside
    ``offload_root`` (default: the system's temporary directory, which may be in RAM),
    removed when the model is garbage-collected.
    """
    if dispatch is None:
        return model
    from accelerate import dispatch_model
    from accelerate.utils import offload_state_dict

    offload_dir = None
    disk = [name for name, value in dispatch.device_map.items() if value == "disk"]
    if disk:
        if offload_root is not None:
            Path(offload_root).mkdir(parents=True, exist_ok=True)
        offload_dir = tempfile.mkdtemp(
            prefix=".offload-" if offload_root is not None else "repdim-offload-",
            dir=offload_root,
        )
        weakref.finalize(model, shutil.rmtree, offload_dir, ignore_errors=True)
        # Written here rather than by dispatch_model, which misses a whole-model entry "".
        offload_state_dict(
            offload_dir,
            {
                key: value
                for key, value in model.state_dict().items()
                if any(not name or key == name or key.startswith(f"{name}.") for name in disk)
            },
        )
    return dispatch_model(
        model,
        dispatch.device_map,
        main_device=str(dispatch.main_device),
        offload_dir=offload_dir,
        skip_keys=getattr(model, "_skip_keys_device_placement", None),
        force_hooks=True,
    )
