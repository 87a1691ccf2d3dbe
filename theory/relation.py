"""The relation object: one dimension–performance law as a small frozen, symbolic object.

A :class:`Relation` holds a sympy expression for its output (``ppl``, ``acc`` or
``tau``) in terms of ordered inputs and ordered fitted parameters, together with its
provenance and assumptions. It prints as LaTeX, lambdifies to a cached vectorised numpy
function, differentiates with respect to its parameters for delta-method intervals, and
knows which other relations it nests and at which parameter values.

Call convention of the numeric functions
----------------------------------------
``relation.lambdify()`` and ``relation.gradient().function`` take the inputs, then the
parameters, in the order of ``relation.inputs + relation.parameters``, either
positionally or as keyword arguments named by the symbols (``kept_dim=...``,
``hidden_size=...``, ``ppl_dense=...``, ``alpha=...``). Every argument is required.
Arguments are converted to float64 arrays and broadcast against each other; the result
has the broadcast shape (a numpy scalar for scalar arguments). The gradient function
appends one trailing axis with one entry per parameter, in ``relation.parameters`` order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import sympy as sp

from theory.symbols import QUANTITIES, Domain, hidden_size, kept_dim

__all__ = ["Relation", "Gradient", "NumericFunction", "Origin"]

#: Where a relation comes from: reported for the paper, a candidate for a relation
#: the paper states but whose form we do not have, or derived here.
Origin = Literal["reported", "candidate", "derived here"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class NumericFunction:
    """A vectorised numpy function of named arguments (see the module's call convention).

    Attributes
    ----------
    argnames : tuple of str
        Argument names in positional order: inputs, then parameters.
    """

    def __init__(
        self,
        argnames: Sequence[str],
        raw: Callable[..., Any],
        n_outputs: int | None = None,
        label: str = "",
    ) -> None:
        self.argnames = tuple(argnames)
        self._raw = raw
        self._n_outputs = n_outputs
        self._label = label

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[np.ndarray]:
        if len(args) > len(self.argnames):
            raise TypeError(f"{self._label} takes {len(self.argnames)} arguments, got {len(args)}")
        values = dict(zip(self.argnames, args))
        for key, value in kwargs.items():
            if key not in self.argnames:
                raise TypeError(
                    f"{self._label} got an unexpected argument {key!r}; "
                    f"it takes {', '.join(self.argnames)}"
                )
            if key in values:
                raise TypeError(f"{self._label} got two values for {key!r}")
            values[key] = value
        missing = [name for name in self.argnames if name not in values]
        if missing:
            raise TypeError(f"{self._label} is missing {', '.join(missing)}")
        return [np.asarray(values[name], dtype=np.float64) for name in self.argnames]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arrays = self._bind(args, kwargs)
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            raw = self._raw(*arrays)
        if self._n_outputs is None:
            out = np.broadcast_to(np.asarray(raw, dtype=np.float64), shape).copy()
        else:
            columns = [np.broadcast_to(np.asarray(r, dtype=np.float64), shape) for r in raw]
            out = np.stack(columns, axis=-1) if columns else np.zeros((*shape, 0))
        return out[()] if out.ndim == 0 else out

    def __repr__(self) -> str:
        return f"<NumericFunction {self._label}({', '.join(self.argnames)})>"


@dataclass(frozen=True)
class Gradient:
    """Derivatives of a relation's output with respect to its parameters.

    Attributes
    ----------
    parameters : tuple of sympy.Symbol
        The parameters, in order.
    exprs : tuple of sympy.Expr
        ``d output / d parameter`` for each parameter.
    function : NumericFunction
        Vectorised numpy function of inputs then parameters; its result has a trailing
        axis of length ``len(parameters)``.
    """

    parameters: tuple[sp.Symbol, ...]
    exprs: tuple[sp.Expr, ...]
    function: NumericFunction


@dataclass(frozen=True, eq=False)
class Relation:
    """One dimension–performance relation.

    Parameters
    ----------
    name : str
        Short, stable snake_case name (the registry key).
    title : str
        One line saying what the relation is.
    output : sympy.Symbol
        The predicted quantity (``ppl``, ``acc`` or ``tau`` from :mod:`theory.symbols`).
    expr : sympy.Expr
        The output as a function of inputs and parameters.
    inputs, parameters : tuple of sympy.Symbol
        Ordered inputs (measured or known) and ordered fitted parameters (maybe none).
    origin : {"reported", "candidate", "derived here"}
        Machine-readable summary of the provenance.
    provenance : str
        Where the relation comes from, in words.
    assumptions : tuple of str
        What it rests on, in words.
    display : sympy.Equality, optional
        The equation in the form it is usually written (e.g. solved for ``ln PPL``),
        for printing; it may hold unevaluated sub-expressions (``D/d``), which
        ``.doit()`` releases. ``Eq(output, expr)`` when omitted.
    dense_point : mapping, optional
        Substitutions that describe the dense model; ``{kept_dim: hidden_size}`` by
        default.
    dense_value : sympy.Expr
        The output of the dense model (e.g. ``ppl_dense``).
    anchored : bool
        Whether the relation returns ``dense_value`` at ``dense_point`` for every
        parameter value. A relation that is not anchored must nest an anchored one.
    constraints : tuple of sympy relationals
        Joint conditions on the inputs beyond each symbol's own domain.
    parameter_domains : mapping
        Parameter ranges under which the relation keeps the reported direction
        (performance does not improve as ``d`` shrinks).
    monotone : (sympy.Symbol, int), optional
        ``(input, +1 or -1)``: the output is non-decreasing (+1) or non-increasing (-1)
        in that input whenever the parameters lie in ``parameter_domains``.
    nests_at : mapping
        ``{other relation name: {parameter: value}}``: this relation equals the other
        at those values of its own parameters (values may be expressions in the other
        relation's parameters).
    """

    name: str
    title: str
    output: sp.Symbol
    expr: sp.Expr
    inputs: tuple[sp.Symbol, ...]
    parameters: tuple[sp.Symbol, ...]
    origin: Origin
    provenance: str
    assumptions: tuple[str, ...]
    dense_value: sp.Expr
    display: sp.Equality | None = None
    dense_point: Mapping[sp.Symbol, sp.Expr] = field(
        default_factory=lambda: {kept_dim: hidden_size}
    )
    anchored: bool = True
    constraints: tuple[sp.Basic, ...] = (sp.Le(kept_dim, hidden_size),)
    parameter_domains: Mapping[sp.Symbol, Domain] = field(default_factory=dict)
    monotone: tuple[sp.Symbol, int] | None = None
    nests_at: Mapping[str, Mapping[sp.Symbol, sp.Expr]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"relation names are snake_case, got {self.name!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "assumptions", tuple(self.assumptions))
        object.__setattr__(self, "constraints", tuple(self.constraints))
        object.__setattr__(self, "expr", sp.sympify(self.expr))
        object.__setattr__(self, "dense_value", sp.sympify(self.dense_value))
        object.__setattr__(
            self,
            "dense_point",
            MappingProxyType({k: sp.sympify(v) for k, v in self.dense_point.items()}),
        )
        object.__setattr__(
            self, "parameter_domains", MappingProxyType(dict(self.parameter_domains))
        )
        object.__setattr__(
            self,
            "nests_at",
            MappingProxyType(
                {
                    other: MappingProxyType({p: sp.sympify(v) for p, v in values.items()})
                    for other, values in self.nests_at.items()
                }
            ),
        )
        symbols = self.inputs + self.parameters
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"{self.name}: inputs and parameters must be distinct symbols")
        for symbol in (*symbols, self.output):
            if symbol not in QUANTITIES:
                raise ValueError(f"{self.name}: {symbol} is not a quantity in theory.symbols")
        if self.output in symbols:
            raise ValueError(f"{self.name}: the output {self.output} cannot also be an input")
        stray = self.expr.free_symbols - set(symbols)
        if stray:
            raise ValueError(
                f"{self.name}: expression uses undeclared symbols {sorted(map(str, stray))}"
            )
        if self.display is not None:
            stray = self.display.free_symbols - set(symbols) - {self.output}
            if stray:
                raise ValueError(f"{self.name}: display uses undeclared symbols {stray}")
        for values in self.nests_at.values():
            unknown = set(values) - set(self.parameters)
            if unknown:
                raise ValueError(f"{self.name}: nesting values for unknown parameters {unknown}")
        if self.monotone is not None and (
            self.monotone[0] not in self.inputs or self.monotone[1] not in (-1, 1)
        ):
            raise ValueError(f"{self.name}: monotone must be (an input, +1 or -1)")

    # --- symbolic views ------------------------------------------------------------

    @property
    def equation(self) -> sp.Equality:
        """``Eq(output, expr)``."""
        return sp.Eq(self.output, self.expr, evaluate=False)

    @property
    def argnames(self) -> tuple[str, ...]:
        """Names of the numeric function's arguments: inputs, then parameters."""
        return tuple(s.name for s in self.inputs + self.parameters)

    def latex(
        self, *, form: Literal["display", "explicit"] = "display", plain: bool = False
    ) -> str:
        """The relation as a LaTeX equation (math mode, no delimiters).

        Parameters
        ----------
        form : {"display", "explicit"}
            ``"display"`` prints the equation as usually written (e.g. for ``ln PPL``);
            ``"explicit"`` prints ``output = expr``.
        plain : bool
            Spell every symbol as one letter with an optional subscript (``P_{0}`` for
            PPL_dense), which sympy's LaTeX parsers read back; the structure of the
            string is otherwise identical.

        Examples
        --------
        >>> from theory import get_relation
        >>> get_relation("ppl_reported").latex()
        '\\\\ln{\\\\left(\\\\mathrm{PPL} \\\\right)} = \\\\frac{D}{d} \\\\cdot \\\\ln{\\\\left(\\\\mathrm{PPL}_{\\\\mathrm{dense}} \\\\right)}'
        """
        equation = self.display if form == "display" and self.display is not None else None
        if equation is None:
            equation = self.equation
        names = {
            symbol: (QUANTITIES[symbol].plain_latex if plain else QUANTITIES[symbol].latex)
            for symbol in equation.free_symbols
        }
        return sp.latex(
            equation, symbol_names=names, mul_symbol="dot", ln_notation=True, order="none"
        )

    # --- numerics --------------------------------------------------------------------

    @functools.cached_property
    def _function(self) -> NumericFunction:
        raw = sp.lambdify(self.inputs + self.parameters, self.expr, modules="numpy")
        return NumericFunction(self.argnames, raw, label=self.name)

    def lambdify(self) -> NumericFunction:
        """The output as a cached, vectorised numpy function (see the call convention).

        Examples
        --------
        >>> from theory import get_relation
        >>> f = get_relation("ppl_power").lambdify()
        >>> f.argnames
        ('kept_dim', 'hidden_size', 'ppl_dense', 'alpha')
        >>> float(f(kept_dim=2048, hidden_size=4096, ppl_dense=6.0, alpha=1.0))
        36.0
        >>> f(kept_dim=[4096, 2048], hidden_size=4096, ppl_dense=6.0, alpha=1.0)
        array([ 6., 36.])
        """
        return self._function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate after checking that every value lies in its domain."""
        values = dict(zip(self.argnames, args), **kwargs)
        self.check(**values)
        return self._function(**values)

    def check(self, **values: Any) -> None:
        """Raise ``ValueError`` if a value lies outside its domain or a constraint fails.

        Only the given values are checked; constraints are checked when all their
        symbols are given.
        """
        problems = []
        for name, value in values.items():
            symbol = next((s for s in self.inputs if s.name == name), None)
            if symbol is None:
                continue
            domain = QUANTITIES[symbol].domain
            if not domain.contains(value):
                problems.append(f"{name} must lie in {domain}")
        for constraint, names, test in self._constraint_tests:
            if not all(n in values for n in names):
                continue
            if not np.all(test(*(np.asarray(values[n], dtype=float) for n in names))):
                problems.append(f"{constraint} must hold")
        if problems:
            raise ValueError(f"{self.name}: " + "; ".join(problems))

    @functools.cached_property
    def _constraint_tests(self) -> list[tuple[sp.Basic, list[str], Callable[..., Any]]]:
        tests = []
        for constraint in self.constraints:
            symbols = sorted(constraint.free_symbols, key=lambda s: s.name)
            test = sp.lambdify(symbols, constraint, modules="numpy")
            tests.append((constraint, [s.name for s in symbols], test))
        return tests

    @functools.cached_property
    def _gradient(self) -> Gradient:
        exprs = tuple(sp.diff(self.expr, p) for p in self.parameters)
        raw = sp.lambdify(self.inputs + self.parameters, list(exprs), modules="numpy")
        function = NumericFunction(
            self.argnames, raw, n_outputs=len(exprs), label=f"gradient of {self.name}"
        )
        return Gradient(self.parameters, exprs, function)

    def gradient(self) -> Gradient:
        """Derivatives with respect to the parameters, symbolic and numeric (cached).

        Examples
        --------
        >>> from theory import get_relation
        >>> g = get_relation("logit_temperature").gradient()
        >>> g.exprs
        ((kept_dim/hidden_size)**eta*log(kept_dim/hidden_size),)
        >>> g.function(kept_dim=4096, hidden_size=4096, eta=0.5)
        array([0.])
        """
        return self._gradient

    def variance(self, covariance: Any, *args: Any, **kwargs: Any) -> Any:
        """Delta-method variance of the output, ``g^T Σ g``, at the given values.

        Parameters
        ----------
        covariance : array_like, shape (p, p)
            Covariance of the fitted parameters, in ``parameters`` order.
        *args, **kwargs
            Inputs and parameters, as for :meth:`lambdify`.
        """
        g = np.asarray(self._gradient.function(*args, **kwargs))
        p = len(self.parameters)
        cov = np.asarray(covariance, dtype=np.float64).reshape(p, p)
        return np.einsum("...i,ij,...j->...", g, cov, g)[()]

    # --- nesting -----------------------------------------------------------------------

    def nests(self, other: Relation) -> dict[str, sp.Expr] | None:
        """Parameter values at which this relation reduces to ``other``, or ``None``.

        The values are keyed by this relation's parameter names; they are sympy
        numbers, or expressions in ``other``'s parameters.

        Examples
        --------
        >>> from theory import get_relation
        >>> get_relation("ppl_power").nests(get_relation("ppl_reported"))
        {'alpha': 1}
        >>> get_relation("ppl_reported").nests(get_relation("ppl_power")) is None
        True
        """
        if other.output != self.output:
            return None
        if other is self or other.name == self.name:
            return {p.name: p for p in self.parameters}
        values = self.nests_at.get(other.name)
        if values is None:
            return None
        return {p.name: values[p] for p in self.parameters if p in values}

    def nested_in(self, other: Relation) -> dict[str, sp.Expr] | None:
        """The values of ``other``'s parameters at which it reduces to this relation."""
        return other.nests(self)

    def restricted(self, values: Mapping[str, Any]) -> sp.Expr:
        """The expression with some parameters fixed (by name)."""
        by_name = {p.name: p for p in self.parameters}
        return self.expr.subs({by_name[n]: sp.sympify(v) for n, v in values.items()})

    # --- text ----------------------------------------------------------------------------

    def formula_text(self) -> str:
        """The display equation as plain text, e.g. ``log(ppl) = hidden_size*... ``."""
        equation = self.display if self.display is not None else self.equation
        return f"{sp.sstr(equation.lhs)} = {sp.sstr(equation.rhs)}"

    def summary(self) -> str:
        """A few readable lines: formula, symbols, nesting, provenance, assumptions."""
        lines = [
            f"{self.name}: {self.title}",
            f"  {self.formula_text()}",
            f"  output: {self.output}   inputs: {', '.join(map(str, self.inputs))}"
            f"   parameters: {', '.join(map(str, self.parameters)) or '(none)'}",
        ]
        for other, values in self.nests_at.items():
            at = ", ".join(f"{p} = {v}" for p, v in values.items())
            lines.append(f"  nests {other} at {at}")
        lines.append(f"  origin: {self.origin}. {self.provenance}")
        lines.extend(f"  - {a}" for a in self.assumptions)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Relation {self.name}: {self.formula_text()}>"
