"""The generic registry: registration styles, lazy entries, unknown names."""

from __future__ import annotations

import math

import pytest

from theory.registry import DuplicateNameError, Registry, UnknownNameError


def test_register_directly_and_as_decorator_in_order() -> None:
    registry: Registry[object] = Registry("thing")
    assert registry.register("one", 1) == 1

    @registry.register("two")
    def two() -> int:
        return 2

    assert registry["two"] is two
    assert registry.names() == ["one", "two"]
    assert list(registry) == ["one", "two"]
    assert len(registry) == 2
    assert "one" in registry and "three" not in registry
    assert registry.items() == [("one", 1), ("two", two)]


def test_lazy_entry_is_imported_on_first_lookup() -> None:
    registry: Registry[object] = Registry("function")
    assert registry.register("sqrt", "math:sqrt") is None
    assert "sqrt" in registry
    assert registry.get("sqrt") is math.sqrt
    registry.register("pi_digits", "math:pi.as_integer_ratio")
    assert registry["pi_digits"]() == math.pi.as_integer_ratio()


def test_duplicates_need_overwrite() -> None:
    registry: Registry[int] = Registry("number")
    registry.register("a", 1)
    with pytest.raises(DuplicateNameError):
        registry.register("a", 2)
    registry.register("a", 3, overwrite=True)
    assert registry["a"] == 3 and registry.names() == ["a"]


def test_unknown_name_suggests_close_names() -> None:
    registry: Registry[int] = Registry("relation")
    for i, name in enumerate(["ppl_power", "ppl_affine", "acc_parallel"]):
        registry.register(name, i)
    with pytest.raises(UnknownNameError) as info:
        registry["ppl_powr"]
    assert isinstance(info.value, KeyError)
    assert info.value.suggestions[0] == "ppl_power"
    assert "did you mean 'ppl_power'" in str(info.value)
    assert "Known: ppl_power, ppl_affine, acc_parallel." in str(info.value)
    with pytest.raises(UnknownNameError) as info:
        registry["zzz"]
    assert "did you mean" not in str(info.value)


def test_unregister() -> None:
    registry: Registry[int] = Registry("number")
    registry.register("a", 1)
    registry.unregister("a")
    assert "a" not in registry
    with pytest.raises(UnknownNameError):
        registry.unregister("a")


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError):
        Registry[int]("number").register("", 1)
