"""Sweeps on models dispatched by accelerate with a device_map, and --max-memory parsing.

torch has a single CPU device (``torch.device("cpu:1")`` is the CPU), so a device map
"across CPU devices" places every module on the same device, and ``from_pretrained``
with such a map (or with ``device_map="auto"`` on a machine without a GPU) attaches no
hooks at all. The nearest equivalent of a model split over GPUs is therefore a model
dispatched by ``accelerate.dispatch_model`` over a per-layer map with ``force_hooks``:
every module then carries the same AlignDevicesHook a multi-GPU map gives it, and the
slicing, perplexity and activation-flow code runs through those hooks. Offloading to
disk is real on a CPU machine (``device_map="auto"`` with a small CPU cap), so that path
is tested end to end; moves between GPUs, and a CPU-stored layer visiting a GPU, are
not exercised here (the placement rules are checked on the ``meta`` device instead).
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


def test_sweep_slices_a_model_offloaded_to_disk(config, tmp_path, monkeypatch):
    """``--device-map auto`` with a CPU cap too small for the model offloads the rest to
    disk (weights on ``meta``, streamed in by accelerate's hooks at every call); the
    sweep brings them in, slices, re-offloads the sliced weights and measures the same
    numbers as a sweep of the plain model."""
    import measure.devices as devices

    plain = tmp_path / "plain"
    Sweep(config, plain, progress=False).run(KEPT)

    seen = []
    original = devices.undispatch

    def spy(model):
        meta = sum(p.is_meta for p in model.parameters())
        dispatch = original(model)
        seen.append((meta, dispatch))
        return dispatch

    folders = []
    original_redispatch = devices.redispatch

    def redispatch_spy(model, dispatch, **kwargs):
        model = original_redispatch(model, dispatch, **kwargs)
        folders.extend(out.glob(".offload-*/index.json"))
        return model

    monkeypatch.setattr(devices, "undispatch", spy)
    monkeypatch.setattr(devices, "redispatch", redispatch_spy)
    offloaded = config.replace(device_map="auto", max_memory="cpu=20KB")
    out = tmp_path / "offloaded"
    Sweep(offloaded, out, progress=False).run(KEPT)
    assert len(seen) == 1  # the one sliced cell
    meta, dispatch = seen[0]
    assert meta > 0 and dispatch.offloaded and "disk" in dispatch.device_map.values()
    # The sliced weights were offloaded next to the archives, and removed after the cell.
    assert len(folders) == 1 and not list(out.glob(".offload-*"))
    for d in KEPT:
        a = strip_cell_attrs(xr.load_dataset(Sweep(config, plain).path(d)))
        b = strip_cell_attrs(xr.load_dataset(Sweep(offloaded, out).path(d)))
        assert b.attrs.pop("device") == "auto"
        a.attrs.pop("device")
        assert '"device_map": "auto"' in b.attrs.pop("config")  # the full configuration
        a.attrs.pop("config")
        xr.testing.assert_identical(a, b)


def test_undispatch_brings_offloaded_weights_in(tiny_model_dir, tmp_path):
    from accelerate import dispatch_model

    from measure.devices import input_device, redispatch
    from measure.models import load_model
    from measure.slicing import slice_model

    path = str(tiny_model_dir / "model")
    tokens = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(0))
    calibration = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))
    plain = load_model(path).model
    expected = plain(input_ids=tokens).logits
    # The embedding and one layer on disk, the rest offloaded to the CPU.
    model = load_model(path).model
    device_map = layer_map(model, last="disk")
    device_map["model.embed_tokens"] = "disk"
    model = dispatch_model(model, device_map, main_device="cpu", offload_dir=str(tmp_path))
    assert model.get_input_embeddings().weight.is_meta
    assert input_device(model) == torch.device("cpu")  # the hook's execution device
    dispatch = undispatch(model)
    assert dispatch.device_map == device_map and dispatch.main_device == torch.device("cpu")
    assert not is_dispatched(model) and not any(p.is_meta for p in model.parameters())
    torch.testing.assert_close(model(input_ids=tokens).logits, expected, rtol=0, atol=0)
    # Sliced, re-offloaded to a fresh folder, and still equal to the plain model sliced.
    slice_model(model, calibration, kept_dim=16, progress=False, device=dispatch.main_device)
    model = redispatch(model, dispatch)
    assert is_dispatched(model) and model.get_input_embeddings().weight.is_meta
    slice_model(plain, calibration, kept_dim=16, progress=False)
    torch.testing.assert_close(
        model(input_ids=tokens).logits, plain(input_ids=tokens).logits, rtol=0, atol=0
    )


def test_placement_helpers_follow_each_module(tiny_model_dir):
    """Where shortcuts, keyword arguments and layers go, checked on the ``meta`` device
    (a second device that exists on every machine)."""
    from measure.slicing.interleaved import _run_device, _to_device
    from measure.slicing.rotate import module_device, set_shortcut

    meta, cpu = torch.device("meta"), torch.device("cpu")
    layer = torch.nn.Linear(4, 4, device="meta")
    set_shortcut(layer, "attn_shortcut", torch.eye(4, dtype=torch.float64), torch.float16)
    assert layer.attn_shortcut.device == meta and layer.attn_shortcut.dtype == torch.float16
    assert module_device(layer) == meta and module_device(torch.nn.ReLU()) == cpu
    kwargs = {"position_embeddings": (torch.ones(2), torch.zeros(2)), "mask": None, "n": 3}
    moved = _to_device(kwargs, meta)
    assert [t.device for t in moved["position_embeddings"]] == [meta, meta]
    assert moved["mask"] is None and moved["n"] == 3
    # CPU-stored modules visit the given device; modules elsewhere stay where they are.
    assert _run_device(cpu, meta) == meta
    assert _run_device(meta, torch.device("cpu")) == meta
    assert _run_device(cpu, None) == cpu


def test_undispatch_restores_the_class_forward(tiny_model_dir):
    from accelerate import dispatch_model

    from measure.models import load_model

    model = load_model(str(tiny_model_dir / "model")).model
    tokens = torch.randint(0, model.config.vocab_size, (1, 8))
    expected = model(input_ids=tokens).logits
    model = dispatch_model(model, layer_map(model), main_device="cpu", force_hooks=True)
    assert undispatch(model).device_map == layer_map(model)
    assert not is_dispatched(model)
    assert all("forward" not in module.__dict__ for module in model.modules())
    torch.testing.assert_close(model(input_ids=tokens).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_sweep_on_the_cpu(config, tmp_path, dtype):
    """The paper profile's dtypes through every path (slicing maths still float64)."""
    import numpy as np

    from measure.archive import open_sweep

    Sweep(config, tmp_path / "float32", progress=False).run(KEPT)
    Sweep(config.replace(dtype=dtype), tmp_path / dtype, progress=False).run(KEPT)
    full, half = open_sweep(tmp_path / "float32"), open_sweep(tmp_path / dtype)
    assert half.attrs["dtype"] == dtype
    # Half precision moves the numbers a little (measured: 5e-5 relative on PPL ~ 68).
    np.testing.assert_allclose(half.ppl.values, full.ppl.values, rtol=1e-3)
    sliced = half.sel(kept_dim=16)
    assert np.isfinite(sliced.kl_divergence) and np.isfinite(sliced.residual_cosine).all()
    np.testing.assert_allclose(
        sliced.retained_energy, full.sel(kept_dim=16).retained_energy, rtol=1e-3
    )


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_layers_visit_the_gpu_while_sliced(tiny_model_dir):
    from measure.models import load_model
    from measure.slicing import slice_model

    path = str(tiny_model_dir / "model")
    calibration = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))
    tokens = calibration[:1]
    on_cpu, visiting = load_model(path).model, load_model(path).model
    slice_model(on_cpu, calibration, kept_dim=16, progress=False)
    slice_model(visiting, calibration, kept_dim=16, progress=False, device="cuda")
    assert {p.device.type for p in visiting.parameters()} == {"cpu"}  # every layer came back
    torch.testing.assert_close(
        visiting(input_ids=tokens).logits, on_cpu(input_ids=tokens).logits, rtol=1e-4, atol=1e-4
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_sweep_of_a_model_split_over_two_gpus(config, tmp_path, monkeypatch):
    import numpy as np

    from measure.archive import open_sweep

    plain = tmp_path / "plain"
    Sweep(config, plain, progress=False).run(KEPT)
    split = config.replace(device_map="auto", max_memory="0=40KB,1=10GiB,cpu=10GiB")
    Sweep(split, tmp_path / "split", progress=False).run(KEPT)
    a, b = open_sweep(plain), open_sweep(tmp_path / "split")
    np.testing.assert_allclose(b.ppl.values, a.ppl.values, rtol=1e-3)
