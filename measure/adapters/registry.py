"""A small registry keyed by strings, with lazy ``"module:object"`` entries.

The adapter registry maps the HF ``config.architectures[0]`` string to an adapter
class. Entries come from three places, in increasing priority:

1. the built-in families, listed lazily so that looking up a name imports only
   the module that defines it;
2. the ``repdim.adapters`` entry-point group of installed distributions
   (``"<architecture>" = "package.module:AdapterClass"``);
3. run-time registration through :func:`register_adapter`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Generic, TypeVar

from measure.errors import ToolkitError

if TYPE_CHECKING:
    from measure.adapters.base import DecoderAdapter

T = TypeVar("T")

ENTRY_POINT_GROUP = "repdim.adapters"


class UnknownArchitectureError(ToolkitError):
    """An HF architecture string with no registered adapter."""


class UnsupportedModelError(ToolkitError):
    """A registered architecture whose configuration uses a feature we cannot slice."""


class Registry(Generic[T]):
    """Map names to objects, resolving ``"module:object"`` strings on first use.

    Parameters
    ----------
    kind : what the entries are, used in error messages ("adapter").
    error : the exception raised for an unknown name.

    Examples
    --------
    >>> reg = Registry("widget")
    >>> @reg.register("Round")
    ... class Round:
    ...     pass
    >>> reg.get("Round") is Round
    True
    >>> reg.add_lazy("Square", "fractions:Fraction")
    >>> reg.get("Square").__name__
    'Fraction'
    >>> reg.get("Rond")
    Traceback (most recent call last):
    ...
    measure.errors.ToolkitError: unknown widget 'Rond'. Did you mean 'Round'? Registered: Round, Square.
    """

    def __init__(self, kind: str, error: type[ToolkitError] = ToolkitError) -> None:
        self.kind = kind
        self._error = error
        self._entries: dict[str, T | str] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering an object under one or more names (later wins)."""
        if not names:
            raise TypeError("register() needs at least one name")

        def decorate(obj: T) -> T:
            for name in names:
                self._entries[name] = obj
            return obj

        return decorate

    def add_lazy(self, name: str, target: str, *, overwrite: bool = True) -> None:
        """Register ``"module:object"``, imported when ``name`` is first looked up."""
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'module:object', got {target!r}")
        if overwrite or name not in self._entries:
            self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """Return the object registered under ``name``, importing it if it is lazy."""
        if name not in self._entries:
            raise self._error(self._unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            try:
                obj = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise self._error(
                    f"{self.kind} {name!r} is registered as {entry!r}, which cannot be "
                    f"imported: {exc}"
                ) from exc
            # The import may itself have registered the object under this name.
            self._entries[name] = obj
            return obj
        return entry

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        known = ", ".join(self.names()) or "none"
        return f"unknown {self.kind} {name!r}.{hint} Registered: {known}."


#: Architecture string -> adapter class.
ADAPTERS: Registry = Registry("architecture", UnknownArchitectureError)

_BUILTIN = {
    "LlamaForCausalLM": "measure.adapters.llama:LlamaAdapter",
    "MistralForCausalLM": "measure.adapters.llama:MistralAdapter",
    "Qwen2ForCausalLM": "measure.adapters.llama:Qwen2Adapter",
    "Phi3ForCausalLM": "measure.adapters.phi3:Phi3Adapter",
    "OPTForCausalLM": "measure.adapters.opt:OPTAdapter",
    "PhiForCausalLM": "measure.adapters.phi:PhiAdapter",
}
for _name, _target in _BUILTIN.items():
    ADAPTERS.add_lazy(_name, _target)

_entry_points_loaded = False


def load_entry_points() -> None:
    """Add adapters declared by installed distributions (once; run-time ones win)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ADAPTERS.add_lazy(ep.name, ep.value, overwrite=ep.name not in _BUILTIN)


def register_adapter(*architectures: str) -> Callable[[T], T]:
    """Class decorator registering an adapter under HF ``architectures[0]`` strings.

    Examples
    --------
    >>> from measure.adapters import DecoderAdapter, register_adapter
    >>> @register_adapter("MyLlamaForCausalLM")
    ... class MyAdapter(DecoderAdapter):
    ...     pass
    >>> "MyLlamaForCausalLM" in registered_architectures()
    True
    """
    return ADAPTERS.register(*architectures)


def registered_architectures() -> list[str]:
    """Sorted architecture strings that have an adapter (built-in, entry point, run time)."""
    load_entry_points()
    return ADAPTERS.names()


def adapter_class(architecture: str) -> type[DecoderAdapter]:
    """The adapter class registered for ``architecture``.

    Raises
    ------
    UnknownArchitectureError
        With the registered names and a "did you mean" suggestion.
    """
    load_entry_points()
    return ADAPTERS.get(architecture)
