"""booktabs tables and number formatting for the reports (plain LaTeX, no siunitx)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["booktabs", "fmt", "fmt_p", "tex_escape", "LONG_TABLE_ROWS"]

#: Tables with more rows become a ``longtable`` (needs ``\usepackage{longtable}``), which
#: breaks across pages instead of overflowing one.
LONG_TABLE_ROWS = 30

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: Any) -> str:
    """Escape LaTeX's special characters in plain text.

    Examples
    --------
    >>> tex_escape("acc:piqa_norm 5%")
    'acc:piqa\\\\_norm 5\\\\%'
    """
    return "".join(_ESCAPES.get(c, c) for c in str(text))


def fmt(value: Any, sig: int = 4) -> str:
    """A number with ``sig`` significant figures; ``--`` for missing values.

    Integers print in full; very large or small magnitudes use scientific notation
    written for LaTeX text mode.

    Examples
    --------
    >>> fmt(20.2412), fmt(0.000123456), fmt(None), fmt(3072)
    ('20.24', '0.0001235', '--', '3072')
    >>> fmt(6775635968.0, 3)
    '6.78e+09'
    """
    if value is None:
        return "--"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "--"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-4 <= abs(x) < 1e6:
        return f"{x:.{sig}g}" if abs(x) >= 10 ** (sig - 1) else _fixed(x, sig)
    return f"{x:.{sig - 1}e}"


def _fixed(x: float, sig: int) -> str:
    decimals = max(0, sig - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def fmt_p(p: Any) -> str:
    """A p-value: two significant figures, ``<1e-10`` below that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "--"
    if p < 1e-10:
        return "<1e-10"
    return f"{p:.2g}"


def booktabs(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    caption: str = "",
    label: str = "",
    align: str | None = None,
    notes: str = "",
) -> str:
    """A ``table`` with a booktabs ``tabular``; cells are already LaTeX text.

    Examples
    --------
    >>> print(booktabs(["kept\\\\_dim", "ppl"], [["512", "20.24"]], caption="x"))
    \\begin{table}[htbp]
    \\centering
    \\caption{x}
    \\begin{tabular}{lr}
    \\toprule
    kept\\_dim & ppl \\\\
    \\midrule
    512 & 20.24 \\\\
    \\bottomrule
    \\end{tabular}
    \\end{table}
    """
    align = align or "l" + "r" * (len(headers) - 1)
    if len(rows) > LONG_TABLE_ROWS:
        return _longtable(headers, rows, caption, label, align, notes)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{caption}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(headers) + r" \\"]
    lines.append(r"\midrule")
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if notes:
        lines.append(rf"\par\smallskip{{\footnotesize {notes}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def _longtable(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    caption: str,
    label: str,
    align: str,
    notes: str,
) -> str:
    head = " & ".join(headers) + r" \\"
    lines = [rf"\begin{{longtable}}{{{align}}}"]
    if caption:
        lines.append(rf"\caption{{{caption}}}" + (rf"\label{{{label}}}" if label else "") + r"\\")
    lines += [r"\toprule", head, r"\midrule", r"\endfirsthead"]
    lines += [r"\toprule", head, r"\midrule", r"\endhead"]
    lines += [r"\bottomrule", r"\endfoot"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    if notes:
        lines.append(rf"\multicolumn{{{len(headers)}}}{{l}}{{\footnotesize {notes}}} \\")
    lines.append(r"\end{longtable}")
    return "\n".join(lines)
