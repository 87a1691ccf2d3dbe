"""A small generic registry: names to objects, with lazy entries and "did you mean".

The same class serves relations here and can serve adapters, corpora or metrics
elsewhere. Entries are registered directly, through a decorator, or lazily as a
``"package.module:attribute"`` string that is imported on first use.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

__all__ = ["Registry", "UnknownNameError", "DuplicateNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message suggests close names."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        self.suggestions = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        super().__init__(name)

    def __str__(self) -> str:
        message = f"unknown {self.kind} {self.name!r}"
        if self.suggestions:
            message += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        return message + f" Known: {', '.join(self.known) or '(none)'}."


class DuplicateNameError(ValueError):
    """A name registered twice without ``overwrite=True``."""


class Registry(Generic[T]):
    """Names mapped to objects, in registration order.

    Parameters
    ----------
    kind : str
        What the registry holds, used in error messages (e.g. ``"relation"``).

    Examples
    --------
    >>> colours = Registry[str]("colour")
    >>> colours.register("red", "#f00")
    '#f00'
    >>> @colours.register("green")
    ... def green() -> str:
    ...     return "#0f0"
    >>> colours.register("sqrt", "math:sqrt")  # lazy: imported on first lookup
    >>> colours["sqrt"](4.0)
    2.0
    >>> list(colours)
    ['red', 'green', 'sqrt']
    >>> colours["gren"]
    Traceback (most recent call last):
    ...
    theory.registry.UnknownNameError: unknown colour 'gren'; did you mean 'green'? Known: red, green, sqrt.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._order: list[str] = []

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T, *, overwrite: bool = ...) -> T: ...

    @overload
    def register(self, name: str, obj: str, *, overwrite: bool = ...) -> None: ...

    def register(self, name: str, obj: object = None, *, overwrite: bool = False) -> object:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        A string ``obj`` of the form ``"module:attribute"`` is a lazy entry, imported
        the first time the name is looked up.
        """
        if obj is None:

            def decorator(target: T) -> T:
                self.register(name, target, overwrite=overwrite)
                return target

            return decorator
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._order and not overwrite:
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered")
        self._entries.pop(name, None)
        self._lazy.pop(name, None)
        if name not in self._order:
            self._order.append(name)
        if isinstance(obj, str) and ":" in obj:
            self._lazy[name] = obj
            return None
        self._entries[name] = obj  # type: ignore[assignment]
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name``; unknown names raise :class:`UnknownNameError`."""
        if name not in self._order:
            raise UnknownNameError(self.kind, name, self.names())
        self._order.remove(name)
        self._entries.pop(name, None)
        self._lazy.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered under ``name``, importing a lazy entry if needed."""
        if name in self._entries:
            return self._entries[name]
        if name in self._lazy:
            module_name, _, attribute = self._lazy[name].partition(":")
            obj = importlib.import_module(module_name)
            for part in attribute.split("."):
                obj = getattr(obj, part)
            self._entries[name] = obj  # type: ignore[assignment]
            del self._lazy[name]
            return self._entries[name]
        raise UnknownNameError(self.kind, name, self.names())

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._order)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs in registration order (resolves lazy entries)."""
        return [(name, self.get(name)) for name in self._order]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
