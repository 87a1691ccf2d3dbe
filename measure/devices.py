"""Devices for a sweep: memory caps, and slicing a model that accelerate has dispatched.

``--device-map auto`` loads a model through accelerate, which may attach hooks to its
modules (they move each module's inputs to its execution device and, for offloaded
modules, stream the weights in at call time). SliceGPT rewrites the weights and the
decoder blocks in place, which those hooks get in the way of:

* a hook replaces ``module.forward`` on the instance, so the sliced block class that
  slicing swaps in would never be called;
* an offloaded module keeps its weights on the ``meta`` device and reloads the
  original weights at every call, so rotating them in place is impossible.

:func:`undispatch` therefore removes the hooks before slicing and refuses, with a clear
message, weights that are offloaded or spread over several devices (the slicing maths
keeps every junction's float64 second moment and basis on one device); after slicing,
:func:`redispatch` puts the hooks back with the same device map for evaluation.

Examples
--------
>>> parse_max_memory("0=20GiB,cpu=64GiB")
{0: '20GiB', 'cpu': '64GiB'}
>>> parse_max_memory('{"0": "20GiB", "cpu": "64GiB"}')
{0: '20GiB', 'cpu': '64GiB'}
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from measure.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)


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
        if not _MEMORY.match(value):
            raise UsageError(f"--max-memory size must look like 20GiB or 500MB; got {value!r}.")
        caps[device] = value.replace(" ", "")
    return caps


def is_dispatched(model: nn.Module) -> bool:
    """True when accelerate hooks are attached to ``model`` or any of its modules."""
    return any(hasattr(module, "_hf_hook") for module in model.modules())


def undispatch(model: nn.Module) -> dict[str, Any] | None:
    """Remove accelerate's hooks so that ``model`` can be sliced in place.

    Returns the device map to give back to :func:`redispatch` after slicing, or
    ``None`` when the model was not dispatched.

    Raises
    ------
    UsageError
        Weights are offloaded (on the ``meta`` device) or on more than one device.
    """
    if not is_dispatched(model):
        return None
    offloaded = sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.is_meta})
    if offloaded:
        shown = ", ".join(offloaded[:3]) + (" ..." if len(offloaded) > 3 else "")
        raise UsageError(
            f"Slicing rewrites the weights in place, but {len(offloaded)} module(s) ({shown}) "
            "are offloaded by device_map (their weights live on the meta device and are "
            "reloaded at every call). Raise --max-memory so that the model fits on the "
            "device(s) without offloading, or use a smaller dtype."
        )
    devices = sorted({str(p.device) for p in model.parameters()})
    if len(devices) > 1:
        raise UsageError(
            f"device_map spread the model over {', '.join(devices)}. SliceGPT's interleaved "
            "PCA runs every block on the calibration activations of the previous one and "
            "keeps the float64 bases on one device, so the model must fit on one device for "
            "slicing; cap --max-memory to one GPU (e.g. 0=75GiB) or use --device cuda."
        )
    device_map = dict(getattr(model, "hf_device_map", None) or {"": devices[0]})
    from accelerate.hooks import remove_hook_from_module

    remove_hook_from_module(model, recurse=True)
    for module in model.modules():
        # accelerate restores the original forward as an instance attribute; that bound
        # method would shadow the sliced block class that slicing swaps in.
        bound = module.__dict__.get("forward")
        if getattr(bound, "__self__", None) is module and getattr(
            bound, "__func__", None
        ) is getattr(type(module), "forward", None):
            del module.__dict__["forward"]
    return device_map


def redispatch(model: nn.Module, device_map: dict[str, Any] | None) -> nn.Module:
    """Attach accelerate's hooks again with ``device_map`` (a no-op for ``None``)."""
    if device_map is None:
        return model
    from accelerate import dispatch_model

    main = next(iter(device_map.values()))
    return dispatch_model(model, device_map, main_device=main, force_hooks=True)
