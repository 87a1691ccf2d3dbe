"""Save and load sliced models: safetensors weights plus a JSON slicing config.

A saved slice is a directory with

- ``model.safetensors``: the sliced model's state dict (shortcut matrices included);
- ``spectra.safetensors``: per-junction eigenvalues (the PCA measurements);
- ``slicing.json``: everything needed to rebuild the module tree without
  calibration data or hub access: the HF config of the base model (untied), the
  architecture, the dense model's facts, the schedule, the fusion options, the
  orientation and seed, library versions, and free-form provenance ``metadata``.

Loading builds the HF model from the stored config with empty weights, applies the
fused structure (parameter-free norms, blocks with shortcuts), creates any
parameter the state dict holds that the dense layout lacks, and assigns the stored
tensors. The result computes the same logits as the model that was saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from measure.slicing.fusion import (
    DENSE_FACTS_ATTRIBUTE,
    FUSION_ATTRIBUTE,
    FusionInfo,
    prepare_fused_structure,
)
from measure.slicing.schedule import SlicingSchedule
from theory.architecture import ArchitectureFacts

if TYPE_CHECKING:
    from measure.slicing.interleaved import SlicingResult

FORMAT = "repdim-sliced-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
SPECTRA_FILE = "spectra.safetensors"
CONFIG_FILE = "slicing.json"


@dataclass
class LoadedSlice:
    """A sliced model read back from disk.

    Attributes
    ----------
    model : the rebuilt HF causal-LM, in eval mode.
    facts : facts of the dense model it was sliced from.
    schedule, fusion, orientation, seed : as at slicing time.
    eigenvalues : per-junction eigenvalue spectra (per-token second moment).
    metadata : the provenance dictionary given at save time.
    config : the whole parsed ``slicing.json``.
    """

    model: nn.Module
    facts: ArchitectureFacts
    schedule: SlicingSchedule
    fusion: FusionInfo
    orientation: str
    seed: int
    eigenvalues: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _versions() -> dict[str, str]:
    from measure.versions import library_versions, package_version

    return {
        "repdim": package_version("repdim", missing="unknown"),
        **library_versions(("torch", "transformers")),
    }


def save_sliced(
    result: SlicingResult,
    directory: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a sliced model to ``directory`` (created if needed) and return its path.

    ``metadata`` should carry the calibration provenance (corpus, its hash,
    nsamples, seqlen, seed); it must be JSON-serialisable.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = result.model
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    spectra = {
        s.name: torch.from_numpy(np.ascontiguousarray(s.eigenvalues)) for s in result.spectra
    }
    save_file(spectra, str(directory / SPECTRA_FILE), metadata={"format": FORMAT})
    dtype = next(iter(state.values())).dtype
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": result.facts.architecture,
        "dtype": str(dtype).removeprefix("torch."),
        "facts": result.facts.to_dict(),
        "schedule": result.schedule.to_dict(),
        "fusion": result.fusion.to_dict(),
        "orientation": result.orientation,
        "seed": result.seed,
        "calibration": result.calibration,
        "junctions": [
            {
                "name": s.name,
                "layer": s.layer,
                "position": s.position,
                "kept_dim": s.kept_dim,
                "num_tokens": s.num_tokens,
                "damping": s.damping,
            }
            for s in result.spectra
        ],
        "base_config": model.config.to_dict(),
        "versions": _versions(),
        "metadata": metadata or {},
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return directory


def _build_empty_model(base_config: dict[str, Any]) -> nn.Module:
    import transformers
    from accelerate import init_empty_weights

    config_dict = dict(base_config)
    model_type = config_dict.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **config_dict)
    config.tie_word_embeddings = False
    with init_empty_weights(include_buffers=False):
        return transformers.AutoModelForCausalLM.from_config(config)


def _assign(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    owner_path, _, name = key.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    if name in owner._buffers:
        owner._buffers[name] = tensor
        return
    old = owner._parameters.get(name)
    requires_grad = True if old is None else old.requires_grad
    if name.endswith("_shortcut"):
        requires_grad = False
    owner.register_parameter(name, nn.Parameter(tensor, requires_grad=requires_grad))


def _sync_shapes(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.Embedding):
            module.num_embeddings, module.embedding_dim = module.weight.shape


def load_sliced(
    directory: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> LoadedSlice:
    """Rebuild a sliced model saved by :func:`save_sliced`, without calibration data.

    Parameters
    ----------
    directory : the directory written by :func:`save_sliced`.
    device : where to put the weights.
    dtype : cast floating-point weights to this dtype (default: as saved).
    """
    from safetensors.torch import load_file

    from measure.adapters import get_adapter
    from measure.errors import ToolkitError

    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ToolkitError(f"{directory} is not a saved sliced model (no {CONFIG_FILE})")
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ToolkitError(
            f"{config_path} has format {config.get('format')!r} version "
            f"{config.get('format_version')!r}; this version reads {FORMAT!r} {FORMAT_VERSION}"
        )
    model = _build_empty_model(config["base_config"])
    adapter = get_adapter(model)
    prepare_fused_structure(adapter)
    state = load_file(str(directory / WEIGHTS_FILE), device=str(device))
    for key, tensor in state.items():
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        _assign(model, key, tensor)
    _sync_shapes(model)
    missing = set(model.state_dict()) ^ set(state)
    if missing:
        raise ToolkitError(f"{directory}: state dict and model disagree on {sorted(missing)[:5]}")
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:
        raise ToolkitError(f"{directory}: no stored values for {leftover[:5]}")
    model.to(device)
    model.eval()
    fusion = FusionInfo(**config["fusion"])
    facts = ArchitectureFacts.from_dict(config["facts"])
    setattr(model, FUSION_ATTRIBUTE, fusion)
    setattr(model, DENSE_FACTS_ATTRIBUTE, facts)
    spectra_path = directory / SPECTRA_FILE
    eigenvalues = (
        {k: v.numpy() for k, v in load_file(str(spectra_path)).items()}
        if spectra_path.is_file()
        else {}
    )
    return LoadedSlice(
        model=model,
        facts=facts,
        schedule=SlicingSchedule.from_dict(config["schedule"]),
        fusion=fusion,
        orientation=config["orientation"],
        seed=int(config["seed"]),
        eigenvalues=eigenvalues,
        metadata=config.get("metadata", {}),
        config=config,
    )
