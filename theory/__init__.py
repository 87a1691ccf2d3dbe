"""Symbolic dimension–performance relations and architecture facts (pure Python + sympy)."""

from __future__ import annotations

from theory.architecture import ArchitectureFacts

__all__ = ["ArchitectureFacts"]
