"""The dry-run planner: offline, fast, torch-free, exact counts, done cells."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from measure.plan import model_facts, plan_sweep
from measure.sweep import MeasureConfig, Sweep
from theory.architecture import LLAMA3_8B, PHI3_MINI
from theory.counts import dense_parameter_count, kept_dim_from_sparsity, sliced_parameter_count

PROBE = """
import sys
from fit.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules, "the dry run imported torch"
sys.exit(code)
"""


def dry_run(*args: str) -> tuple[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_PROXY": "*", "HTTPS_PROXY": "http://0.0.0.0:9"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=60
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    return done.stdout, seconds


@pytest.mark.parametrize(
    ("alias", "facts"), [("llama3", LLAMA3_8B), ("phi3", PHI3_MINI)], ids=["llama3", "phi3"]
)
def test_paper_models_plan_offline_fast_and_without_torch(alias, facts, tmp_path):
    out, seconds = dry_run(
        "validate", "--model", alias, "--profile", "paper", "--device", "cuda", "--dtype",
        "bfloat16", "--runs", str(tmp_path), "--dry-run",
    )  # fmt: skip
    assert seconds < 2.0, f"dry run took {seconds:.2f} s"
    d = kept_dim_from_sparsity(facts.hidden_size, 0.25)
    assert f"{dense_parameter_count(facts):,}" in out
    assert f"{sliced_parameter_count(facts, d):,}" in out
    assert "TFLOP/s" in out and "MFU" in out and "device GiB" in out
    rows = [line for line in out.splitlines() if line.endswith("to run")]
    assert len(rows) == 7  # dense + the six default sparsities


def test_llama3_counts_match_the_published_figures():
    plan = plan_sweep(
        MeasureConfig.from_profile("paper", model="llama3"), "runs/none", sparsities=[0.25]
    )
    assert [c.kept_dim for c in plan.cells] == [4096, 3072]
    assert [c.parameter_count for c in plan.cells] == [8_030_261_248, 6_775_635_968]
    dense, sliced = plan.cells
    # Weights in bfloat16/float16 dominate the dense cell. On the GPU the calibration
    # activations wait in host memory: only 3 B_cal T D b are on the device.
    assert dense.memory["weights"] == 8_030_261_248 * 2
    assert sliced.memory["calibration batches in flight"] == 3 * 16 * 2048 * 4096 * 2
    assert "calibration activations" not in sliced.memory
    cpu_plan = plan_sweep(
        MeasureConfig.from_profile("paper", model="llama3", device="cpu"),
        "runs/none",
        sparsities=[0.25],
    )
    cpu_sliced = cpu_plan.cells[1]
    assert cpu_sliced.memory["calibration activations"] == 2 * 1024 * 2048 * 4096 * 2
    assert cpu_sliced.device_bytes > sliced.device_bytes
    assert sliced.flops_per_token < dense.flops_per_token


def test_plan_marks_done_cells_of_the_same_protocol(
    tiny_model_dir, tiny_sweep_config, tmp_path, capsys
):
    from fit.cli import main

    config = tiny_sweep_config.replace(capture_windows=0)
    corpus = config.eval_corpus
    Sweep(config, tmp_path, progress=False).run([32])
    args = ["measure", "--model", config.model, "--calibration-corpus", corpus, "--corpus"]
    args += [corpus, "--nsamples", "4", "--calibration-seqlen", "16", "--seqlen", "16"]
    args += ["--eval-windows", "3", "--tasks", "none", "--capture-windows", "0"]
    args += ["--kept-dim", "24,16", "--output", str(tmp_path), "--dry-run"]
    assert main(args) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    status = {int(r[0]): r[-1] for r in rows if r and r[0].isdigit() and len(r) >= 7}
    assert status == {32: "done", 24: "run", 16: "run"}  # "to run"
    assert main([*args[:-1], "--seed", "7", "--dry-run"]) == 0  # another protocol: nothing done
    assert "done" not in capsys.readouterr().out.split("kept_dim")[1].split("cells:")[0]


def test_local_directory_facts_match_the_weights(tiny_model_dir):
    import torch  # noqa: F401 - only to count the real parameters
    from transformers import AutoModelForCausalLM

    facts, source = model_facts(str(tiny_model_dir / "model"))
    assert source.endswith("config.json")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir / "model")
    assert dense_parameter_count(facts) == sum(p.numel() for p in model.parameters())
    config = json.loads((tiny_model_dir / "model" / "config.json").read_text())
    assert facts.hidden_size == config["hidden_size"]


def test_unknown_model_is_a_usage_error(capsys):
    from fit.cli import main

    assert main(["validate", "--model", "not-a-model", "--dry-run"]) == 2
    assert "Unknown model" in capsys.readouterr().err


def test_device_map_plans_compare_the_weights_with_the_gpu_caps(tmp_path):
    base = MeasureConfig.from_profile("paper", model="llama3", device_map="auto")
    sparsities = (0.1, 0.25, 0.5)
    weights = max(
        c.memory["weights"] for c in plan_sweep(base, tmp_path, sparsities=sparsities).cells
    )
    assert weights == sliced_parameter_count(LLAMA3_8B, 3680) * 2  # s = 0.1 is the largest

    def note(max_memory):
        plan = plan_sweep(base.replace(max_memory=max_memory), tmp_path, sparsities=sparsities)
        return next(a for a in plan.assumptions if a.startswith("--device-map auto"))

    assert note(None).endswith("does not model accelerate's split")
    roomy = note("0=20GiB,1=20GiB,cpu=96GiB")
    assert "GPU(s) 0, 1 sum to 40.0 GiB" in roomy and roomy.endswith("fit within them")
    tight = note("0=10GiB,1=2GiB,cpu=96GiB")
    excess = (weights - 12 * 1024**3) / 1024**3
    assert f"exceed them by {excess:.1f} GiB" in tight and "visit GPU 0" in tight
