"""The complete validate pipeline, measuring path, on a tiny random model."""

from __future__ import annotations

import json

from fit.cli import main


def test_validate_measures_missing_cells_and_writes_the_report(tiny_model_dir, tmp_path, capsys):
    corpus = str(tiny_model_dir / "corpus.txt")
    args = [
        "validate",
        "--model",
        str(tiny_model_dir / "model"),
        "--calibration-corpus",
        corpus,
        "--corpus",
        corpus,
        "--nsamples",
        "4",
        "--calibration-seqlen",
        "16",
        "--seqlen",
        "16",
        "--eval-windows",
        "4",
        "--tasks",
        "none",
        "--capture-windows",
        "2",
        "--kept-dim",
        "28,24,20,16",
        "--runs",
        str(tmp_path / "runs"),
        "--output",
        str(tmp_path / "report"),
        "--no-progress",
        "--n-boot",
        "200",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ppl_reported" in out
    assert len(list((tmp_path / "runs").glob("*.nc"))) == 5
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["protocol"]["input"] == "measured archives"
    assert summary["protocol"]["config_hash"]
    assert (tmp_path / "report" / "report.tex").is_file()
    # A second run resumes every cell and rebuilds the same verdicts.
    assert main(args) == 0
    assert (
        json.loads((tmp_path / "report" / "summary.json").read_text())["verdicts"]
        == summary["verdicts"]
    )
