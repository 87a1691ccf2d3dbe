"""theory is pure Python + sympy: importing it must not pull in torch or hypothesis."""

from __future__ import annotations

import subprocess
import sys


def test_theory_imports_without_torch() -> None:
    code = (
        "import sys, theory, theory.counts, theory.docs, theory.relations\n"
        "heavy = sorted({'torch', 'transformers', 'xarray', 'hypothesis'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
