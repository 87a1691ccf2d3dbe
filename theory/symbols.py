"""The symbols that relations are written in, with their domains and spellings.

One symbol stands for one quantity everywhere: in relations, in lambdified keyword
arguments (the symbol's name), in archives and in LaTeX headers.

=================== =========== ================================ =====================
name (keyword)      LaTeX       meaning                          domain
=================== =========== ================================ =====================
``kept_dim``        ``d``       residual width kept by slicing   integer, ``0 < d <= D``
``hidden_size``     ``D``       residual width of the dense model integer, ``D > 0``
``ppl``             PPL         perplexity of the sliced model   ``(1, inf)``
``ppl_dense``       PPL_dense   perplexity of the dense model    ``(1, inf)``
``acc``             acc         accuracy of the sliced model     ``[0, 1]``
``acc_dense``       acc_dense   accuracy of the dense model      ``(0, 1]``
``chance``          ``c``       chance accuracy of a task        ``[0, 1)``
``retained_energy`` ``rho``     mean retained PCA energy         ``(0, 1]``
``tau``             ``tau``     logit temperature                ``(0, inf)``
``context_length``  ``n``       positions one token attends to   integer, ``n > 0``
=================== =========== ================================ =====================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import sympy as sp

__all__ = [
    "Domain",
    "Quantity",
    "QUANTITIES",
    "quantity",
    "kept_dim",
    "hidden_size",
    "ppl",
    "ppl_dense",
    "acc",
    "acc_dense",
    "chance",
    "retained_energy",
    "tau",
    "context_length",
    "alpha",
    "beta",
    "gamma",
    "eta",
    "k",
    "intercept",
    "slope",
]


@dataclass(frozen=True)
class Domain:
    """An interval of the real line, optionally restricted to integers.

    Parameters
    ----------
    lower, upper : float
        Bounds; ``-inf``/``inf`` for none.
    lower_closed, upper_closed : bool
        Whether the bound itself belongs to the domain.
    integer : bool
        Whether only integers belong to the domain.

    Examples
    --------
    >>> Domain(0.0, 1.0, lower_closed=False).contains(0.5)
    True
    >>> str(Domain(1.0, float("inf"), lower_closed=False))
    '(1, ∞)'
    """

    lower: float = -np.inf
    upper: float = np.inf
    lower_closed: bool = True
    upper_closed: bool = True
    integer: bool = False

    def contains(self, value: object) -> bool:
        """Whether every element of ``value`` lies in the domain."""
        x = np.asarray(value, dtype=float)
        low = x >= self.lower if self.lower_closed else x > self.lower
        high = x <= self.upper if self.upper_closed else x < self.upper
        ok = low & high & np.isfinite(x)
        if self.integer:
            ok &= np.equal(np.mod(x, 1.0), 0.0)
        return bool(np.all(ok))

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            if np.isinf(v):
                return "∞" if v > 0 else "-∞"
            return f"{v:g}"

        left = "[" if self.lower_closed and np.isfinite(self.lower) else "("
        right = "]" if self.upper_closed and np.isfinite(self.upper) else ")"
        text = f"{left}{fmt(self.lower)}, {fmt(self.upper)}{right}"
        return f"integers in {text}" if self.integer else text


@dataclass(frozen=True)
class Quantity:
    """A named quantity: its sympy symbol, its meaning, domain and LaTeX spellings.

    ``latex`` is the spelling used in reports; ``plain_latex`` spells the same symbol
    with one letter and an optional subscript, which sympy's LaTeX parsers read back
    as a single symbol.
    """

    symbol: sp.Symbol
    meaning: str
    domain: Domain
    latex: str
    plain_latex: str

    @property
    def name(self) -> str:
        return self.symbol.name


def _q(
    name: str,
    meaning: str,
    domain: Domain,
    latex: str,
    plain_latex: str | None = None,
    **assumptions: bool,
) -> Quantity:
    return Quantity(sp.Symbol(name, **assumptions), meaning, domain, latex, plain_latex or latex)


_POSITIVE = Domain(0.0, np.inf, lower_closed=False)
_REAL = Domain()
_ABOVE_ONE = Domain(1.0, np.inf, lower_closed=False)

_ALL = (
    _q(
        "kept_dim",
        "residual width kept by slicing (d <= D)",
        Domain(1, np.inf, integer=True),
        "d",
        integer=True,
        positive=True,
    ),
    _q(
        "hidden_size",
        "residual width of the dense model",
        Domain(1, np.inf, integer=True),
        "D",
        integer=True,
        positive=True,
    ),
    _q("ppl", "perplexity of the sliced model", _ABOVE_ONE, r"\mathrm{PPL}", "P", positive=True),
    _q(
        "ppl_dense",
        "perplexity of the dense model",
        _ABOVE_ONE,
        r"\mathrm{PPL}_{\mathrm{dense}}",
        "P_{0}",
        positive=True,
    ),
    _q("acc", "accuracy of the sliced model", Domain(0.0, 1.0), r"\mathrm{acc}", "A", real=True),
    _q(
        "acc_dense",
        "accuracy of the dense model",
        Domain(0.0, 1.0, lower_closed=False),
        r"\mathrm{acc}_{\mathrm{dense}}",
        "A_{0}",
        positive=True,
    ),
    _q(
        "chance",
        "chance accuracy of the task (1/choices for multiple choice)",
        Domain(0.0, 1.0, upper_closed=False),
        "c",
        nonnegative=True,
    ),
    _q(
        "retained_energy",
        "mean over junctions of the fraction of PCA energy kept by the first d directions",
        Domain(0.0, 1.0, lower_closed=False),
        r"\rho",
        positive=True,
    ),
    _q("tau", "logit temperature: z_sliced ≈ tau * z_dense", _POSITIVE, r"\tau", positive=True),
    _q(
        "context_length",
        "positions one token attends to (for FLOP counts)",
        Domain(1, np.inf, integer=True),
        "n",
        integer=True,
        positive=True,
    ),
    _q("alpha", "exponent on D/d", _REAL, r"\alpha", real=True),
    _q("beta", "exponent on the retained energy", _REAL, r"\beta", real=True),
    _q("gamma", "exponent of the decay towards chance", _REAL, r"\gamma", real=True),
    _q("eta", "exponent of the logit temperature", _REAL, r"\eta", real=True),
    _q("k", "log-accuracy slope in d/D", _REAL, "k", real=True),
    _q("intercept", "intercept of ln PPL / ln PPL_dense against D/d", _REAL, "a", real=True),
    _q("slope", "slope of ln PPL / ln PPL_dense against D/d", _REAL, "b", real=True),
)

#: Every known quantity, keyed by its symbol.
QUANTITIES: Mapping[sp.Symbol, Quantity] = MappingProxyType({q.symbol: q for q in _ALL})
_BY_NAME = {q.name: q for q in _ALL}


def quantity(key: sp.Symbol | str) -> Quantity:
    """The :class:`Quantity` of a symbol or symbol name.

    Examples
    --------
    >>> quantity("ppl_dense").latex
    '\\\\mathrm{PPL}_{\\\\mathrm{dense}}'
    """
    if isinstance(key, str):
        return _BY_NAME[key]
    return QUANTITIES[key]


kept_dim = _BY_NAME["kept_dim"].symbol
hidden_size = _BY_NAME["hidden_size"].symbol
ppl = _BY_NAME["ppl"].symbol
ppl_dense = _BY_NAME["ppl_dense"].symbol
acc = _BY_NAME["acc"].symbol
acc_dense = _BY_NAME["acc_dense"].symbol
chance = _BY_NAME["chance"].symbol
retained_energy = _BY_NAME["retained_energy"].symbol
tau = _BY_NAME["tau"].symbol
context_length = _BY_NAME["context_length"].symbol
alpha = _BY_NAME["alpha"].symbol
beta = _BY_NAME["beta"].symbol
gamma = _BY_NAME["gamma"].symbol
eta = _BY_NAME["eta"].symbol
k = _BY_NAME["k"].symbol
intercept = _BY_NAME["intercept"].symbol
slope = _BY_NAME["slope"].symbol
