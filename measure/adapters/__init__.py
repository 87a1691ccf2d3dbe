"""Architecture adapters: facts and module access for each supported model family.

One module per family (``llama``, ``phi3``, ``opt``, ``phi``). An adapter is
selected by the HF ``config.architectures[0]`` string. Third-party packages add
adapters through the ``repdim.adapters`` entry-point group or, at run time, with
:func:`register_adapter`.

Examples
--------
>>> from measure.adapters import registered_architectures
>>> "LlamaForCausalLM" in registered_architectures()
True
"""

from __future__ import annotations

from typing import Any

from measure.adapters.base import DecoderAdapter, architecture_name
from measure.adapters.registry import (
    ADAPTERS,
    ENTRY_POINT_GROUP,
    Registry,
    UnknownArchitectureError,
    UnsupportedModelError,
    adapter_class,
    register_adapter,
    registered_architectures,
)
from theory.architecture import ArchitectureFacts

__all__ = [
    "ADAPTERS",
    "ENTRY_POINT_GROUP",
    "DecoderAdapter",
    "Registry",
    "UnknownArchitectureError",
    "UnsupportedModelError",
    "adapter_class",
    "architecture_facts",
    "architecture_name",
    "get_adapter",
    "register_adapter",
    "registered_architectures",
]


def get_adapter(model: Any) -> DecoderAdapter:
    """Wrap a live HF causal-LM in the adapter registered for its architecture.

    Raises
    ------
    UnknownArchitectureError
        No adapter is registered for ``config.architectures[0]``.
    UnsupportedModelError
        The family is known but this configuration cannot be sliced.
    """
    return adapter_class(architecture_name(model))(model)


def architecture_facts(model_or_config: Any) -> ArchitectureFacts:
    """Architecture facts of a model or an HF config, without touching any weights."""
    config = getattr(model_or_config, "config", model_or_config)
    name = architecture_name(model_or_config)
    cls = adapter_class(name)
    cls.check_config(config)
    return cls.facts_from_config(config, architecture=name)
