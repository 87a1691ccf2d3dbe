"""Zero-shot multiple-choice accuracy through EleutherAI lm-evaluation-harness.

The harness runs in-process on a (sliced) model object. Two kinds of task:

Hub tasks (need the Hugging Face hub)
    ``piqa``, ``arc_easy``, ``arc_challenge``, ``hellaswag`` (reported: ``acc_norm``) and
    ``winogrande`` (reported: ``acc``), as SliceGPT reports them.
Offline tasks (built at run time from package-shipped labelled data)
    ``analogy_capitals``, ``analogy_family``, ``analogy_comparative``, ``analogy_currency``:
    4-choice completions of the Google analogy set (gensim's ``questions-words.txt``),
    "Athens is to Greece as Baghdad is to" → " Iraq", with three distractors drawn (seeded)
    from the answers of the same section. Capitals are easy for a small LM, currencies hard.
    ``next_sentence``: 4-choice choice of the sentence that follows a sentence of the
    enwiki-sample evaluation part; distractors are sentences of other articles (seeded).
    Reported: ``acc`` for analogies (one- or two-token answers), ``acc_norm`` for
    next_sentence (choices of very different lengths).

Each offline task is written as JSONL plus a harness task config (JSON is valid YAML) into a
directory keyed by the data's hash, and loaded with ``TaskManager(include_path=...)``, which
makes no network call and avoids indexing the harness's own tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from measure.devices import input_device
from measure.errors import UsageError

Metric = Literal["acc", "acc_norm"]

HUB_TASKS: dict[str, Metric] = {
    "piqa": "acc_norm",
    "arc_easy": "acc_norm",
    "arc_challenge": "acc_norm",
    "hellaswag": "acc_norm",
    "winogrande": "acc",
}
ANALOGY_SECTIONS: dict[str, str] = {
    "analogy_capitals": "capital-common-countries",
    "analogy_family": "family",
    "analogy_comparative": "gram3-comparative",
    "analogy_currency": "currency",
}
OFFLINE_TASKS: dict[str, Metric] = {
    **{name: "acc" for name in ANALOGY_SECTIONS},
    "next_sentence": "acc_norm",
}
TASKS: dict[str, Metric] = {**OFFLINE_TASKS, **HUB_TASKS}
HARNESS_PREFIX = "repdim_"
N_CHOICES = 4


def check_tasks(tasks: Sequence[str]) -> list[str]:
    """Validate task names, with a "did you mean" for unknown ones."""
    import difflib

    out = []
    for task in tasks:
        if task not in TASKS:
            close = difflib.get_close_matches(task, list(TASKS), n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(
                f"Unknown task '{task}'.{hint} Offline tasks: {', '.join(OFFLINE_TASKS)}; "
                f"hub tasks: {', '.join(HUB_TASKS)}."
            )
        out.append(task)
    return out


# --- offline task data -----------------------------------------------------------------------


def analogy_sections() -> dict[str, list[tuple[str, str, str, str]]]:
    """The sections of the Google analogy set as lists of (a, b, c, d) quadruples."""
    from measure.data import ANALOGY_FILE, gensim_test_data

    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in gensim_test_data(ANALOGY_FILE).read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            current = line[1:].strip()
            sections[current] = []
        elif line.strip() and current is not None:
            a, b, c, d = line.split()
            sections[current].append((a, b, c, d))
    return sections


def _rng(seed: int, name: str) -> np.random.Generator:
    # One stream per task, so adding a task never changes another task's items.
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return np.random.default_rng([seed, digest])


def _shuffle_choices(
    rng: np.random.Generator, gold: str, distractors: Sequence[str]
) -> tuple[list[str], int]:
    choices = [gold, *distractors]
    order = rng.permutation(len(choices))
    shuffled = [choices[i] for i in order]
    return shuffled, int(np.flatnonzero(order == 0)[0])


def build_analogy_items(name: str, n_items: int | None, seed: int) -> list[dict]:
    section = ANALOGY_SECTIONS[name]
    quads = analogy_sections()[section]
    rng = _rng(seed, name)
    answers = sorted({q[3] for q in quads})
    picks = rng.permutation(len(quads))
    if n_items is not None:
        picks = picks[:n_items]
    items = []
    for index in picks:
        a, b, c, d = quads[int(index)]
        pool = [w for w in answers if w not in {b, c, d}]
        distractors = [pool[int(i)] for i in rng.choice(len(pool), N_CHOICES - 1, replace=False)]
        choices, gold = _shuffle_choices(rng, d, distractors)
        items.append(
            {
                "id": f"{section}:{int(index)}",
                "query": f"{a} is to {b} as {c} is to",
                "choices": [f" {w}" for w in choices],
                "gold": gold,
            }
        )
    return items


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if len(s.split()) >= 6]


def build_next_sentence_items(n_items: int | None, seed: int) -> list[dict]:
    from measure.data import load_corpus

    articles = load_corpus("enwiki-sample").evaluation
    pairs: list[tuple[int, str, str]] = []
    per_article: list[list[str]] = []
    for index, article in enumerate(articles):
        sentences_of_article: list[str] = []
        for paragraph in article.split("\n\n"):
            sentences = _sentences(paragraph.replace("\n", " "))
            sentences_of_article.extend(sentences)
            pairs.extend((index, s, t) for s, t in zip(sentences, sentences[1:]))
        per_article.append(sentences_of_article)
    rng = _rng(seed, "next_sentence")
    picks = rng.permutation(len(pairs))
    if n_items is not None:
        picks = picks[:n_items]
    items = []
    for pick in picks:
        article_index, first, second = pairs[int(pick)]
        others = [i for i in range(len(per_article)) if i != article_index and per_article[i]]
        distractors = []
        for source in rng.choice(others, N_CHOICES - 1, replace=len(others) < N_CHOICES - 1):
            pool = per_article[int(source)]
            distractors.append(pool[int(rng.integers(len(pool)))])
        choices, gold = _shuffle_choices(rng, second, distractors)
        items.append(
            {
                "id": f"enwiki:{int(pick)}",
                "query": first,
                "choices": [f" {c}" for c in choices],
                "gold": gold,
            }
        )
    return items


def build_offline_items(name: str, n_items: int | None, seed: int) -> list[dict]:
    if name in ANALOGY_SECTIONS:
        return build_analogy_items(name, n_items, seed)
    if name == "next_sentence":
        return build_next_sentence_items(n_items, seed)
    raise UsageError(f"'{name}' is not an offline task; offline tasks: {', '.join(OFFLINE_TASKS)}")


def _task_config(name: str, data_file: Path) -> dict:
    return {
        "task": HARNESS_PREFIX + name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{query}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "target_delimiter": "",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


def write_offline_tasks(
    tasks: Sequence[str], n_items: int | None, seed: int, root: Path | None = None
) -> tuple[Path, dict[str, str]]:
    """Write the data and harness configs of offline tasks; return (directory, data hashes).

    The directory is keyed by the hash of everything written, so concurrent runs with the
    same protocol share it and different protocols never overwrite each other.
    """
    from measure.models import cache_dir

    payloads = {}
    hashes = {}
    for name in tasks:
        items = build_offline_items(name, n_items, seed)
        text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
        payloads[name] = text
        hashes[name] = hashlib.sha256(text.encode()).hexdigest()
    key = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
    directory = (root or cache_dir() / "tasks") / key
    if not (directory / "complete").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in payloads.items():
            data_file = directory / f"{name}.jsonl"
            _atomic_write(data_file, text)
            _atomic_write(directory / f"{name}.yaml", json.dumps(_task_config(name, data_file)))
        _atomic_write(directory / "complete", "")
    return directory, hashes


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """Accuracy of one task with its per-item correctness."""

    task: str
    metric: Metric
    accuracy: float
    item_id: tuple[str, ...]
    correct: np.ndarray  # (item,) 0/1 under the reported metric
    correct_acc: np.ndarray  # (item,) 0/1 under acc
    correct_acc_norm: np.ndarray  # (item,) 0/1 under acc_norm
    data_sha256: str = ""

    @property
    def n_items(self) -> int:
        return int(self.correct.size)

    @property
    def stderr(self) -> float:
        n = self.n_items
        return float(self.correct.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def harness_version() -> str:
    from measure.versions import package_version

    return package_version("lm_eval")


def run_tasks(
    model,
    tokenizer,
    tasks: Sequence[str],
    *,
    n_items: int | None = None,
    seed: int = 1234,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, TaskResult]:
    """Evaluate ``model`` zero-shot on ``tasks`` in-process; keep per-item correctness.

    ``n_items`` caps the items per task (offline tasks draw them with ``seed``; hub tasks
    take the harness's first ``n_items``).
    """
    tasks = check_tasks(tasks)
    offline = [t for t in tasks if t in OFFLINE_TASKS]
    hub = [t for t in tasks if t in HUB_TASKS]
    hashes: dict[str, str] = {}
    include = None
    if offline:
        include, hashes = write_offline_tasks(offline, n_items, seed)
    samples = _evaluate(
        model,
        tokenizer,
        [HARNESS_PREFIX + t for t in offline] + hub,
        include,
        hub=bool(hub),
        limit=n_items if hub else None,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    results = {}
    for task in tasks:
        name = HARNESS_PREFIX + task if task in offline else task
        results[task] = _result(task, TASKS[task], samples[name], hashes.get(task, ""))
    return results


def run_items(
    model,
    tokenizer,
    items: dict[str, list[dict]],
    *,
    metric: Metric = "acc",
    batch_size: int = 16,
    directory: Path | None = None,
) -> dict[str, TaskResult]:
    """Evaluate handmade multiple-choice items (``query``, ``choices``, ``gold``, ``id``)
    through the same harness path as the shipped tasks."""
    from measure.models import cache_dir

    text = {n: "".join(json.dumps(i) + "\n" for i in its) for n, its in items.items()}
    key = hashlib.sha256(json.dumps(text, sort_keys=True).encode()).hexdigest()[:16]
    directory = (directory or cache_dir() / "tasks") / f"items-{key}"
    directory.mkdir(parents=True, exist_ok=True)
    for name, payload in text.items():
        _atomic_write(directory / f"{name}.jsonl", payload)
        config = _task_config(name, directory / f"{name}.jsonl")
        _atomic_write(directory / f"{name}.yaml", json.dumps(config))
    samples = _evaluate(
        model,
        tokenizer,
        [HARNESS_PREFIX + n for n in items],
        directory,
        hub=False,
        limit=None,
        seed=0,
        batch_size=batch_size,
        progress=False,
    )
    return {n: _result(n, metric, samples[HARNESS_PREFIX + n], "") for n in items}


def _evaluate(
    model, tokenizer, harness_names, include, *, hub, limit, seed, batch_size, progress
) -> dict[str, list[dict]]:
    import logging

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(include) if include else None, include_defaults=hub)
    device = input_device(model)
    logging.getLogger("lm_eval").setLevel(logging.WARNING if progress else logging.ERROR)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device))
    # HFLM takes a model instance's device from its first parameter, which is ``meta`` for
    # a model whose first module accelerate offloaded; token ids must go to the embedding.
    lm._device = device
    try:
        output = simple_evaluate(
            model=lm,
            tasks=harness_names,
            task_manager=manager,
            log_samples=True,
            bootstrap_iters=0,
            limit=limit,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    except Exception as exc:  # noqa: BLE001
        text = str(exc).lower()
        if hub and ("offline" in text or "connect" in text or "resolve" in text):
            from measure.errors import CorpusError

            raise CorpusError(
                "The hub tasks need the Hugging Face hub, which cannot be reached "
                f"({type(exc).__name__}). Offline, use --tasks {','.join(OFFLINE_TASKS)}."
            ) from None
        raise
    return output["samples"]


def _result(task: str, metric: Metric, samples: list[dict], data_sha256: str) -> TaskResult:
    samples = sorted(samples, key=lambda s: s["doc_id"])
    acc = np.array([s["acc"] for s in samples], dtype=np.int8)
    acc_norm = np.array([s.get("acc_norm", s["acc"]) for s in samples], dtype=np.int8)
    correct = acc_norm if metric == "acc_norm" else acc
    ids = tuple(
        str(s["doc"].get("id", s["doc_id"])) if isinstance(s.get("doc"), dict) else str(s["doc_id"])
        for s in samples
    )
    return TaskResult(
        task=task,
        metric=metric,
        accuracy=float(correct.mean()),
        item_id=ids,
        correct=correct,
        correct_acc=acc,
        correct_acc_norm=acc_norm,
        data_sha256=data_sha256,
    )
