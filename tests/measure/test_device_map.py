"""Sweeps on models dispatched by accelerate with a device_map, and --max-memory parsing.

torch has a single CPU device (``torch.device("cpu:1")`` is the CPU), so a device map
"across CPU devices" places every module on the same device, and ``from_pretrained``
with such a map (or with ``device_map="auto"`` on a machine without a GPU) attaches no
hooks at all. The nearest equivalent of a model split over GPUs is therefore a model
dispatched by ``accelerate.dispatch_model`` over a per-layer map with ``force_hooks``:
every module then carries the same AlignDevicesHook a multi-GPU map gives it, and the
slicing, perplexity and activation-flow code runs through those hooks. Offloaded
weights (``disk`` or CPU offload next to a GPU) are refused with a clear message.
"""

from __future__ import annotations

import pytest
import torch
import xarray as xr

from measure.devices import is_dispatched, parse_max_memory, undispatch
from measure.errors import UsageError
from measure.sweep import Sweep

KEPT = [32, 16]


@pytest.fixture
def config(tiny_sweep_config):
    return tiny_sweep_config


def layer_map(model, last: str = "cpu") -> dict[str, str]:
    """One entry per top-level block, as device_map="auto" writes for a split model."""
    names = ["model.embed_tokens", "model.rotary_emb"]
    names += [f"model.layers.{i}" for i in range(model.config.num_hidden_layers)]
    device_map = {name: "cpu" for name in [*names, "model.norm", "lm_head"]}
    device_map[f"model.layers.{model.config.num_hidden_layers - 1}"] = last
    return device_map


def strip_cell_attrs(ds):
    ds = ds.copy()
    for key in ("created", "cell_seconds", "slicing_seconds"):
        ds.attrs.pop(key, None)
    return ds


def test_max_memory_syntaxes():
    assert parse_max_memory("0=20GiB, 1=20GiB,cpu=64GiB") == {
        0: "20GiB",
        1: "20GiB",
        "cpu": "64GiB",
    }
    assert parse_max_memory('{"0": "20GiB", "cpu": "64GiB"}') == {0: "20GiB", "cpu": "64GiB"}
    assert parse_max_memory(None) is None
    for bad in ("20GiB", "gpu0=20GiB", "0=twenty", "{not json"):
        with pytest.raises(UsageError, match="max-memory"):
            parse_max_memory(bad)


def test_sweep_slices_and_evaluates_a_dispatched_model(config, tmp_path, monkeypatch):
    from accelerate import dispatch_model

    plain = tmp_path / "plain"
    Sweep(config, plain, progress=False).run(KEPT)

    original_load = Sweep._load
    original_measure = Sweep._measure
    seen = []

    def load_dispatched(self):
        loaded = original_load(self)
        device_map = layer_map(loaded.model)
        loaded.model = dispatch_model(loaded.model, device_map, main_device="cpu", force_hooks=True)
        assert is_dispatched(loaded.model) and loaded.model.hf_device_map == device_map
        return loaded

    def measure_spy(self, model, tokenizer, label):
        seen.append((label, is_dispatched(model)))
        return original_measure(self, model, tokenizer, label)

    monkeypatch.setattr(Sweep, "_load", load_dispatched)
    monkeypatch.setattr(Sweep, "_measure", measure_spy)
    mapped = tmp_path / "mapped"
    Sweep(config, mapped, progress=False).run(KEPT)
    # Perplexity of the dense and the sliced model ran through accelerate's hooks.
    assert seen == [("d=32", True), ("d=16", True)]
    for d in KEPT:
        xr.testing.assert_identical(
            strip_cell_attrs(xr.load_dataset(Sweep(config, plain).path(d))),
            strip_cell_attrs(xr.load_dataset(Sweep(config, mapped).path(d))),
        )


def test_device_map_and_max_memory_reach_from_pretrained(config, tmp_path):
    # On a machine without a GPU, "auto" with a CPU cap loads every module on the CPU.
    mapped = config.replace(device_map="auto", max_memory="cpu=2GiB")
    assert mapped.config_hash() == config.config_hash()  # execution options are not hashed
    reports = Sweep(mapped, tmp_path, progress=False).run(KEPT)
    assert [r.skipped for r in reports] == [False, False]


def test_offloaded_weights_are_refused(tiny_model_dir, tmp_path):
    from accelerate import dispatch_model

    from measure.models import load_model

    model = load_model(str(tiny_model_dir / "model")).model
    device_map = layer_map(model, last="disk")
    model = dispatch_model(model, device_map, main_device="cpu", offload_dir=str(tmp_path))
    assert any(p.is_meta for p in model.parameters())
    with pytest.raises(UsageError, match=r"offloaded by device_map.*--max-memory"):
        undispatch(model)


def test_undispatch_restores_the_class_forward(tiny_model_dir):
    from accelerate import dispatch_model

    from measure.models import load_model

    model = load_model(str(tiny_model_dir / "model")).model
    tokens = torch.randint(0, model.config.vocab_size, (1, 8))
    expected = model(input_ids=tokens).logits
    model = dispatch_model(model, layer_map(model), main_device="cpu", force_hooks=True)
    assert undispatch(model) == layer_map(model)
    assert not is_dispatched(model)
    assert all("forward" not in module.__dict__ for module in model.modules())
    torch.testing.assert_close(model(input_ids=tokens).logits, expected, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sweep_on_cuda_in_bfloat16(config, tmp_path):
    import numpy as np

    from measure.archive import open_sweep

    cuda = config.replace(
        device="cuda", dtype="bfloat16", tasks=("analogy_capitals",), task_items=10
    )
    Sweep(cuda, tmp_path, progress=False).run(KEPT)
    ds = open_sweep(tmp_path)
    assert ds.attrs["device"] == "cuda" and ds.attrs["dtype"] == "bfloat16"
    assert np.isfinite(ds.ppl.values).all() and np.isfinite(ds.kl_divergence.sel(kept_dim=16))
