"""Predict, regress, test and report: the statistics on top of measured observations.

A flat public API (as ``statsmodels.api``) over the modules:

- :mod:`fit.observations`: the validated observation table (:class:`Observations`);
- :mod:`fit.regression`: fitting a relation's constants and predicting with intervals;
- :mod:`fit.inference`: nested, equivalence and heterogeneity tests, multiple testing;
- :mod:`fit.bootstrap`: the paired bootstrap over windows or items;
- :mod:`fit.validate`: the whole analysis (:func:`run_validation`);
- :mod:`fit.report`: LaTeX tables, ``report.tex``, figures and ``summary.json``.

Importing :mod:`fit` loads the command line only; the statistics are imported on first
use of these names, so that ``python -m fit --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Observations": "fit.observations",
    "ObservationError": "fit.observations",
    "KNOWN_CHANCE": "fit.observations",
    "FitResult": "fit.regression",
    "InsufficientDataError": "fit.regression",
    "fit_relation": "fit.regression",
    "predict": "fit.regression",
    "TestResult": "fit.inference",
    "nested_test": "fit.inference",
    "tost": "fit.inference",
    "heterogeneity_test": "fit.inference",
    "adjust": "fit.inference",
    "paired_bootstrap": "fit.bootstrap",
    "ValidationResult": "fit.validate",
    "run_validation": "fit.validate",
    "write_report": "fit.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
