"""End to end: external tables through ``python -m fit validate``/``report``, and the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fit.cli import main
from fit.report import write_report
from fit.testing import synthetic_replicates, synthetic_table
from fit.validate import run_validation


def _table(path, relation, constants, *, noise=0.005, seed=0, dims=(1024, 896, 768, 640, 512)):
    frames = [
        synthetic_table(
            relation,
            constants,
            model=m,
            noise=noise,
            stderr=True,
            seed=seed + i,
            kept_dims=dims,
            dense_value=v,
        )
        for i, (m, v) in enumerate((("alpha-1b", 12.0), ("beta-2b", 9.0)))
    ]
    table = pd.concat(frames).drop(columns=["protocol"])
    table.to_csv(path, index=False)
    return path


def test_validate_table_exit_codes_and_report(tmp_path, capsys):
    true_law = _table(tmp_path / "true.csv", "ppl_reported", {})
    out = tmp_path / "report_true"
    assert main(["validate", "--table", str(true_law), "--output", str(out), "--strict"]) == 0
    printed = capsys.readouterr().out
    assert "ppl_reported" in printed and "holm correction" in printed
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {(v["model"], v["relation"]): v for v in summary["verdicts"]}
    assert verdicts[("alpha-1b", "ppl_reported")]["exact"] == "not rejected"
    assert not summary["rejected"]

    false_law = _table(tmp_path / "false.csv", "ppl_power", {"alpha": 1.3})
    out = tmp_path / "report_false"
    assert main(["validate", "--table", str(false_law), "--output", str(out)]) == 0
    capsys.readouterr()
    assert main(["validate", "--table", str(false_law), "--output", str(out), "--strict"]) == 1
    assert "rejected: ppl_reported (alpha-1b ppl)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    # Every number in the tables is in summary.json: the constants fitted to each model.
    fits = {(f["label"].split(" / ")[0], f["relation"]): f for f in summary["fits"]}
    alpha = fits[("alpha-1b", "ppl_power")]["params"]["alpha"]
    assert alpha["ci_lower"] < 1.3 < alpha["ci_upper"]
    assert f"{alpha['estimate']:.4g}" in (out / "tables" / "constants.tex").read_text()
    het = [t for t in summary["tests"] if t["kind"] == "heterogeneity"]
    assert het and all(t["nobs"] == 8 for t in het)

    # The report can be rebuilt from the run directory alone.
    rebuilt = tmp_path / "rebuilt"
    assert main(["report", str(out), "--output", str(rebuilt)]) == 0
    again = json.loads((rebuilt / "summary.json").read_text())
    assert again["verdicts"] == summary["verdicts"]
    assert again["settings"] == summary["settings"]


def test_validate_input_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,hidden_size,kept_dim,metric,value,source\nm,576,600,ppl,20,x\n")
    assert main(["validate", "--table", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 2: kept_dim 600 exceeds hidden_size 576" in err
    assert err.strip().count("\n") == 0
    good = _table(tmp_path / "good.csv", "ppl_reported", {})
    assert main(["validate", "--table", str(good), "--relations", "ppl_reportd"]) == 2
    assert "did you mean 'ppl_reported'" in capsys.readouterr().err
    assert main(["validate", "--model", "lama3"]) == 2  # unknown model: one paragraph
    assert "Did you mean 'llama3'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["validate", "--table", str(good), "--alpha", "2"])
    assert exit.value.code == 2


def test_too_few_observations_are_reported_not_computed(tmp_path, capsys):
    path = _table(tmp_path / "two.csv", "ppl_power", {"alpha": 1.2}, dims=(1024, 768))
    out = tmp_path / "out"
    assert main(["validate", "--table", str(path), "--output", str(out), "--strict"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    nested = [t for t in summary["tests"] if t["kind"] == "nested"]
    assert nested and all(t["status"] == "insufficient" and t["pvalue"] is None for t in nested)
    assert all("observation" in t["note"] for t in nested)
    tests_tex = (out / "tables" / "tests.tex").read_text()
    assert "insufficient" in tests_tex
    verdicts = {v["relation"]: v for v in summary["verdicts"]}
    assert verdicts["ppl_reported"]["exact"] == "insufficient data"


def _flow(dims):
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "retained_energy": (("kept_dim", "junction"), rng.uniform(0.8, 1.0, (len(dims), 5))),
            "kl": (("kept_dim", "window"), rng.uniform(0, 1, (len(dims), 4))),
            "relative_error": (("kept_dim", "layer"), rng.uniform(0, 1, (len(dims), 3))),
            "eigenvalues": (
                ("junction", "component"),
                np.sort(rng.uniform(0, 1, (5, 16)))[:, ::-1],
            ),
        },
        coords={"kept_dim": list(dims)},
    )


def test_report_tex_compiles_with_pdflatex(tmp_path):
    if shutil.which("pdflatex") is None:
        message = "pdflatex is missing (apt-get install texlive-latex-recommended latexmk)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    dims = (1024, 896, 768, 640, 512)
    table = pd.concat(
        [
            synthetic_table("ppl_power", {"alpha": 1.1}, kept_dims=dims, noise=0.01),
            synthetic_table(
                "acc_chance_floor",
                {"gamma": 1.5},
                kept_dims=dims,
                dense_value=0.7,
                chance=0.25,
                noise=0.01,
                metric="acc:piqa",
            ),
        ]
    )
    observations = synthetic_replicates(table, units=120)
    result = run_validation(observations, n_boot=300)
    paths = write_report(result, tmp_path, protocol={"source": "synthetic_table"}, flow=_flow(dims))
    names = {p.name for p in paths}
    for expected in (
        "report.tex",
        "summary.json",
        "flow.tex",
        "predictions.tex",
        "predicted_vs_measured.png",
        "residuals.pdf",
        "flow.nc",
    ):
        assert expected in names, expected
    assert any(n.startswith("spectra_") for n in names)
    assert any(n.startswith("activation_flow_") for n in names)
    tex = (tmp_path / "report.tex").read_text()
    assert "siunitx" not in tex and "booktabs" in tex
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert (tmp_path / "report.pdf").stat().st_size > 10_000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["flow"][0]["kept_dim"] == 1024
    measured = [m for m in summary["measured"] if m["metric"] == "ppl"]
    assert all(m["interval"] == "bootstrap" for m in measured)


def test_predict_prints_every_no_constant_relation_and_counts(capsys):
    from theory import LLAMA3_8B, sliced_parameter_count

    assert (
        main(["predict", "--model", "llama3", "--dense-ppl", "8.3", "--sparsity", "0.25", "--json"])
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    (row,) = record["predictions"]
    assert row["kept_dim"] == 3072
    assert row["ppl_reported"] == pytest.approx(8.3 ** (4096 / 3072))
    assert row["parameters"] == sliced_parameter_count(LLAMA3_8B, 3072)
    assert record["dense"]["parameters"] == LLAMA3_8B.parameter_count()
    assert main(["predict", "--hidden-size", "64", "--dense-ppl", "0.5", "--kept-dim", "32"]) == 2
    assert "--dense-ppl must exceed 1" in capsys.readouterr().err


def test_ls_lists_relations_adapters_and_tasks(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for expected in ("relations", "ppl_reported", "logit_temperature", "LlamaForCausalLM", "piqa"):
        assert expected in out
