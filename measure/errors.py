"""Errors a user is expected to hit, each carrying a one-paragraph message.

The CLI prints ``str(error)`` without a traceback and exits with ``exit_code``.
This module must stay importable without torch.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Base class for user-facing errors (bad input, unreachable data, schema problems)."""

    exit_code: int = 2


class UnknownModelError(ToolkitError):
    """A model alias that is neither registered nor an HF id nor a local directory."""


class ModelUnavailableError(ToolkitError):
    """Weights that cannot be reached: offline, gated, or missing on the hub."""


class MissingPackageError(ToolkitError):
    """An optional data/model package that is not installed."""


class CorpusError(ToolkitError):
    """A corpus that cannot be read or used: unknown name, empty file, not text, too small."""


class CorpusTooSmallError(CorpusError):
    """A corpus with fewer token windows than requested."""

    def __init__(self, message: str, available: int) -> None:
        super().__init__(message)
        self.available = available


class UsageError(ToolkitError):
    """An option value the toolkit cannot use (unknown device or dtype, bad grid, ...)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (for one-paragraph errors), or ``""``."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else ""
