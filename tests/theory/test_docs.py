"""The README's Theory section is generated from the registry and must be current."""

from __future__ import annotations

from pathlib import Path

import pytest

from theory import RELATIONS
from theory.docs import BEGIN, END, main, render_section, update_readme

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_theory_section_is_up_to_date() -> None:
    assert README.exists(), "README.md is missing"
    assert not update_readme(README, check=True), (
        "README.md's Theory section is stale: run `python -m theory.docs`"
    )


def test_section_lists_every_relation_with_formula_and_provenance() -> None:
    section = render_section()
    assert section.startswith(BEGIN) and section.rstrip().endswith(END)
    for name, relation in RELATIONS.items():
        assert f"### `{name}`" in section
        assert relation.latex() in section
        assert relation.provenance in section
        for assumption in relation.assumptions:
            assert assumption in section


def test_update_appends_then_replaces_in_place(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# Project\n\nIntro.\n", encoding="utf-8")
    assert update_readme(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Project\n\nIntro.\n") and text.endswith(END + "\n")
    # Stale content between the markers is replaced; text around them is kept.
    stale = text.replace(render_section(), f"{BEGIN}\nold\n{END}\n") + "\n## After\n"
    path.write_text(stale, encoding="utf-8")
    assert update_readme(path, check=True)
    assert path.read_text(encoding="utf-8") == stale  # check leaves the file alone
    assert update_readme(path)
    assert path.read_text(encoding="utf-8") == text + "\n## After\n"
    assert not update_readme(path)


def test_malformed_markers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(f"{BEGIN}\nno end\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected"):
        update_readme(path)


def test_command_line_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "README.md"
    assert main(["--readme", str(path), "--check"]) == 1
    assert not path.exists()
    assert main(["--readme", str(path)]) == 0
    assert main(["--readme", str(path), "--check"]) == 0
    assert "out of date" in capsys.readouterr().out
