"""The archive schema: one place that says what a (model, kept_dim) cell holds.

A cell is an ``xarray.Dataset`` with

* dims from :data:`DIMS` only;
* scalar coordinates ``model``, ``kept_dim`` and ``hidden_size``;
* the variables of :data:`VARIABLES` (required ones always, optional ones when measured),
  each with the declared dims and with ``units`` and ``long_name`` attributes;
* the global attributes of :data:`REQUIRED_ATTRS`, which record provenance and protocol.

:func:`validate` is called on write and on read.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1

DIMS = ("layer", "junction", "component", "window", "token", "task", "item")
SCALAR_COORDS = ("model", "kept_dim", "hidden_size")


@dataclass(frozen=True)
class Variable:
    dims: tuple[str, ...]
    units: str
    long_name: str
    required: bool = True


VARIABLES: dict[str, Variable] = {
    # perplexity (measure.metrics)
    "ppl": Variable((), "1", "perplexity, exp of the mean over windows of the window NLL"),
    "window_nll": Variable(
        ("window",), "nat", "mean next-token negative log-likelihood per window"
    ),
    "token_nll": Variable(
        ("window", "token"), "nat", "next-token negative log-likelihood per token", False
    ),
    # zero-shot accuracy (measure.tasks)
    "accuracy": Variable(
        ("task",), "1", "zero-shot accuracy under the task's reported metric", False
    ),
    "accuracy_stderr": Variable(("task",), "1", "standard error of the accuracy (items)", False),
    "item_correct": Variable(
        ("item",), "1", "item answered correctly (reported metric), 0 or 1", False
    ),
    "item_correct_acc": Variable(("item",), "1", "item answered correctly under acc", False),
    "item_correct_acc_norm": Variable(
        ("item",), "1", "item answered correctly under acc_norm", False
    ),
    # PCA of the calibration activations (measure.slicing)
    "eigenvalues": Variable(
        ("junction", "component"),
        "activation**2",
        "eigenvalues of the uncentred second moment of calibration activations, descending",
        False,
    ),
    "retained_energy": Variable(
        ("junction",), "1", "share of calibration energy in the kept components", False
    ),
    "junction_kept_dim": Variable(("junction",), "1", "kept dimension at each junction", False),
    # activation flow against the dense parent (measure.capture)
    "residual_norm": Variable(
        ("layer",), "activation", "mean L2 norm of the residual stream", False
    ),
    "residual_norm_dense": Variable(
        ("layer",), "activation", "mean L2 norm of the dense parent's residual stream", False
    ),
    "residual_rel_error": Variable(
        ("layer",),
        "1",
        "relative L2 error of the sliced residual mapped back through Q_d against the dense one",
        False,
    ),
    "residual_cosine": Variable(
        ("layer",), "1", "mean cosine between the mapped-back sliced and the dense residual", False
    ),
    "kl_divergence": Variable(
        (), "nat", "mean per-token KL(dense || sliced) of next-token distributions", False
    ),
    "window_kl_divergence": Variable(
        ("window",),
        "nat",
        "mean per-token KL(dense || sliced) per window (NaN where not captured)",
        False,
    ),
    "top1_agreement": Variable(
        (), "1", "share of tokens where sliced and dense argmax agree", False
    ),
    "entropy": Variable((), "nat", "mean entropy of the next-token distribution", False),
    "entropy_dense": Variable((), "nat", "mean entropy of the dense parent's distribution", False),
    "logit_scale": Variable(
        (), "1", "least-squares tau in z_sliced = tau * z_dense (logits centred per token)", False
    ),
}

# Provenance and protocol. Cell-specific attributes may differ between cells of one sweep.
PROTOCOL_ATTRS = (
    "schema_version",
    "model_id",
    "model_revision",
    "model_sha256",
    "architecture",
    "dtype",
    "device",
    "calibration_corpus",
    "calibration_sha256",
    "nsamples",
    "calibration_seqlen",
    "calibration_mode",
    "seed",
    "orientation",
    "slice_head",
    "eval_corpus",
    "evaluation_sha256",
    "eval_seqlen",
    "eval_windows",
    "tasks",
    "task_items",
    "harness_version",
    "package_version",
    "library_versions",
    "config_hash",
)
CELL_ATTRS = ("created", "cell_seconds")
REQUIRED_ATTRS = PROTOCOL_ATTRS + CELL_ATTRS


class SchemaError(ValueError):
    """A dataset that does not follow the archive schema."""


def validate(ds, *, source: str = "dataset") -> None:
    """Check ``ds`` against the schema; raise :class:`SchemaError` listing every problem."""
    problems: list[str] = []
    for dim in ds.dims:
        if dim not in DIMS:
            problems.append(f"unknown dim '{dim}' (allowed: {', '.join(DIMS)})")
    for coord in SCALAR_COORDS:
        if coord not in ds.coords:
            problems.append(f"missing scalar coordinate '{coord}'")
        elif ds.coords[coord].ndim != 0:
            problems.append(f"coordinate '{coord}' must be scalar")
    for name, spec in VARIABLES.items():
        if name not in ds.data_vars:
            if spec.required:
                problems.append(f"missing variable '{name}'")
            continue
        var = ds[name]
        if tuple(var.dims) != spec.dims:
            problems.append(f"variable '{name}' has dims {tuple(var.dims)}, expected {spec.dims}")
    for name, var in ds.data_vars.items():
        if name not in VARIABLES:
            problems.append(f"unknown variable '{name}'")
        for attr in ("units", "long_name"):
            if not var.attrs.get(attr):
                problems.append(f"variable '{name}' lacks the '{attr}' attribute")
    for attr in REQUIRED_ATTRS:
        if attr not in ds.attrs:
            problems.append(f"missing global attribute '{attr}'")
    if "schema_version" in ds.attrs and int(ds.attrs["schema_version"]) != SCHEMA_VERSION:
        problems.append(
            f"schema_version {ds.attrs['schema_version']} is not {SCHEMA_VERSION} "
            "(written by another version of the toolkit)"
        )
    if problems:
        raise SchemaError(f"{source} does not follow the archive schema: " + "; ".join(problems))


def annotate(ds):
    """Set ``units`` and ``long_name`` of every known variable from the schema."""
    for name in ds.data_vars:
        if name in VARIABLES:
            spec = VARIABLES[name]
            ds[name].attrs.update(units=spec.units, long_name=spec.long_name)
    return ds
