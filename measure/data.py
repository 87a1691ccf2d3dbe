"""Named corpora, their content hashes, and token windows for calibration and evaluation.

Corpora
-------
``enwiki-sample``
    The 106 non-redirect articles of the English Wikipedia excerpt shipped in gensim's test
    data, cleaned to plain text (CC BY-SA). Offline.
``lee-news``
    gensim's ``lee_background.cor``: 300 short news documents (LGPL test data). Offline.
``wikitext2``
    ``wikitext-2-raw-v1`` through ``datasets``: train for calibration, test for evaluation.
    This is the corpus of SliceGPT and of arXiv 2503.04377; it needs the hub.
any path
    A UTF-8 plain text file; documents are separated by blank lines.

Every named corpus except ``wikitext2`` is split into a calibration part and an evaluation
part by document, deterministically: a document goes to the evaluation part when the
first 8 bytes of the sha256 of its key (title, or position) fall in the lowest
``eval_fraction`` of the range. The split never depends on the machine or on a seed.

Examples
--------
>>> corpus = load_corpus("enwiki-sample")
>>> len(corpus.calibration) + len(corpus.evaluation)
106
>>> corpus.sha256 == load_corpus("enwiki-sample").sha256
True
"""

from __future__ import annotations

import bz2
import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from measure.errors import CorpusError, CorpusTooSmallError, MissingPackageError, first_line

if TYPE_CHECKING:
    import torch

WindowMode = Literal["random", "contiguous"]

ENWIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_FILE = "lee_background.cor"
ANALOGY_FILE = "questions-words.txt"
DEFAULT_EVAL_FRACTION = 0.1


@dataclass(frozen=True)
class Corpus:
    """A text corpus split into calibration and evaluation documents.

    Attributes
    ----------
    name : corpus name (``enwiki-sample``, ...) or the file path it was read from.
    calibration, evaluation : the documents of each part, in a fixed order.
    source : where the text comes from, in words, with its licence.
    """

    name: str
    calibration: tuple[str, ...]
    evaluation: tuple[str, ...]
    source: str = ""
    _hashes: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def part(self, which: Literal["calibration", "evaluation"]) -> tuple[str, ...]:
        if which not in ("calibration", "evaluation"):
            raise ValueError(f"part must be 'calibration' or 'evaluation', got {which!r}")
        return getattr(self, which)

    def part_sha256(self, which: Literal["calibration", "evaluation"]) -> str:
        """sha256 of one part: its documents as a JSON list (UTF-8)."""
        if which not in self._hashes:
            self._hashes[which] = _sha256_documents(self.part(which))
        return self._hashes[which]

    @property
    def sha256(self) -> str:
        """Content hash of the whole corpus: both parts and the split between them."""
        joined = f"{self.part_sha256('calibration')}:{self.part_sha256('evaluation')}"
        return hashlib.sha256(joined.encode()).hexdigest()

    def describe(self) -> dict[str, object]:
        """Provenance of this corpus, ready for archive attributes."""
        return {
            "corpus": self.name,
            "corpus_sha256": self.sha256,
            "calibration_sha256": self.part_sha256("calibration"),
            "evaluation_sha256": self.part_sha256("evaluation"),
            "calibration_documents": len(self.calibration),
            "evaluation_documents": len(self.evaluation),
        }


def _sha256_documents(documents: Sequence[str]) -> str:
    payload = json.dumps(list(documents), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _goes_to_evaluation(key: str, eval_fraction: float) -> bool:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < eval_fraction * 2**64


def split_documents(
    keys: Sequence[str], documents: Sequence[str], eval_fraction: float = DEFAULT_EVAL_FRACTION
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split documents into (calibration, evaluation) by a hash of each document's key.

    Examples
    --------
    >>> cal, ev = split_documents(["a", "b", "c", "d"], ["A", "B", "C", "D"], 0.5)
    >>> sorted(cal + ev)
    ['A', 'B', 'C', 'D']
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must lie in (0, 1), got {eval_fraction}")
    calibration: list[str] = []
    evaluation: list[str] = []
    for key, doc in zip(keys, documents, strict=True):
        (evaluation if _goes_to_evaluation(key, eval_fraction) else calibration).append(doc)
    return tuple(calibration), tuple(evaluation)


def gensim_test_data(filename: str) -> Path:
    """Path of a file in gensim's shipped test data, with a clear error if it is missing."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("gensim")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            "The offline corpora come from the test data shipped with gensim, which is not "
            "installed. Install it with: pip install gensim==4.4.0"
        )
    path = Path(spec.submodule_search_locations[0]) / "test" / "test_data" / filename
    if not path.is_file():
        raise MissingPackageError(
            f"gensim is installed but does not ship {filename} (looked in {path.parent}). "
            "Install the version the toolkit was built against: pip install gensim==4.4.0"
        )
    return path


# --- enwiki-sample -------------------------------------------------------------------------

_HEADING = re.compile(r"^\s*=+\s*(.*?)\s*=+\s*$", re.MULTILINE)
_BOLD_ITALIC = re.compile(r"'{2,}")
_LEFTOVER_LINE = re.compile(
    r"^\s*(?:[|!{}]|thumb\||left\||right\||File:|Image:|Category:|\*\s*$).*$",
    re.MULTILINE | re.IGNORECASE,
)
_EMPTY_BRACKETS = re.compile(r"\(\s*[,;]?\s*\)")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([,.;:])")
_MULTI_SPACE = re.compile(r"[ \t]{2,}")
_MULTI_NEWLINE = re.compile(r"\n{3,}")


def clean_wiki_markup(markup: str) -> str:
    """Wiki markup to plain text: gensim's ``filter_wiki`` plus removal of its leftovers.

    Headings become plain lines, bold/italic quotes and empty brackets are dropped, table
    and file lines are removed, and whitespace is normalised.
    """
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(markup)
    text = _HEADING.sub(r"\1", text)
    text = _BOLD_ITALIC.sub("", text)
    text = _LEFTOVER_LINE.sub("", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _MULTI_SPACE.sub(" ", text)
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return _MULTI_NEWLINE.sub("\n\n", text).strip()


@functools.lru_cache(maxsize=2)
def _enwiki_articles() -> tuple[tuple[str, str], ...]:
    from gensim.corpora.wikicorpus import extract_pages

    path = gensim_test_data(ENWIKI_FILE)
    articles = []
    with bz2.open(path) as handle:
        for title, markup, _pageid in extract_pages(handle):
            if markup.lstrip().lower().startswith("#redirect"):
                continue
            text = clean_wiki_markup(markup)
            if text:
                articles.append((title, text))
    return tuple(articles)


def _load_enwiki(eval_fraction: float) -> Corpus:
    articles = _enwiki_articles()
    calibration, evaluation = split_documents(
        [title for title, _ in articles], [text for _, text in articles], eval_fraction
    )
    return Corpus(
        "enwiki-sample",
        calibration,
        evaluation,
        source=f"gensim test data {ENWIKI_FILE} (English Wikipedia, CC BY-SA)",
    )


def _load_lee(eval_fraction: float) -> Corpus:
    path = gensim_test_data(LEE_FILE)
    documents = [
        line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()
    ]
    calibration, evaluation = split_documents(
        [f"lee-{i}" for i in range(len(documents))], documents, eval_fraction
    )
    return Corpus("lee-news", calibration, evaluation, source=f"gensim test data {LEE_FILE} (LGPL)")


def _load_wikitext2(eval_fraction: float) -> Corpus:
    del eval_fraction  # wikitext-2 has its own train/test split
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise MissingPackageError("wikitext2 needs `datasets`: pip install datasets") from exc
    try:
        data = datasets.load_dataset("wikitext", "wikitext-2-raw-v1")
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one message
        raise CorpusError(
            "The corpus wikitext2 (wikitext-2-raw-v1) could not be loaded from the Hugging "
            f"Face hub ({type(exc).__name__}: {first_line(exc)}). It needs network access "
            "or a local datasets cache. Offline, use --corpus enwiki-sample, --corpus "
            "lee-news, or the path of a UTF-8 text file."
        ) from None
    # SliceGPT joins every row of the test split, empty rows included.
    return Corpus(
        "wikitext2",
        tuple(data["train"]["text"]),
        tuple(data["test"]["text"]),
        source="wikitext-2-raw-v1 via datasets (CC BY-SA)",
    )


def read_text_file(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file, refusing empty and binary files with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"The text file {path} does not exist or is not a regular file.")
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(
            f"The text file {path} is empty. A corpus needs plain UTF-8 text; documents are "
            "separated by blank lines."
        )
    if b"\x00" in data:
        raise CorpusError(
            f"The file {path} is not text (it contains NUL bytes). Give a plain UTF-8 text "
            "file, or a named corpus such as enwiki-sample."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"The file {path} is not UTF-8 text (undecodable byte at offset {exc.start}). "
            "Convert it, for example with: iconv -f latin1 -t utf-8"
        ) from None


def _load_text_file(path: str, eval_fraction: float) -> Corpus:
    text = read_text_file(path).replace("\r\n", "\n")
    documents = [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]
    if len(documents) >= 2:
        n_eval = max(1, round(len(documents) * eval_fraction))
        calibration, evaluation = tuple(documents[:-n_eval]), tuple(documents[-n_eval:])
    else:
        # One document: cut it at the line boundary nearest to the split point.
        lines = documents[0].split("\n")
        cut = min(max(1, round(len(lines) * (1 - eval_fraction))), len(lines) - 1)
        if len(lines) < 2:
            calibration, evaluation = (documents[0],), (documents[0],)
            raise CorpusError(
                f"The text file {path} holds a single line, which cannot be split into a "
                "calibration and an evaluation part. Give a longer text with several "
                "paragraphs (separated by blank lines)."
            )
        calibration = ("\n".join(lines[:cut]),)
        evaluation = ("\n".join(lines[cut:]),)
    return Corpus(str(path), calibration, evaluation, source=f"text file {Path(path).name}")


CORPORA: dict[str, str] = {
    "enwiki-sample": "106 English Wikipedia articles shipped with gensim (offline, CC BY-SA)",
    "lee-news": "300 news documents shipped with gensim (offline, LGPL)",
    "wikitext2": "wikitext-2-raw-v1 via datasets (needs the hub; the paper's corpus)",
}

_LOADERS = {"enwiki-sample": _load_enwiki, "lee-news": _load_lee, "wikitext2": _load_wikitext2}


def load_corpus(name: str, *, eval_fraction: float = DEFAULT_EVAL_FRACTION) -> Corpus:
    """Load a named corpus or a UTF-8 text file.

    Parameters
    ----------
    name : one of :data:`CORPORA` or a file path.
    eval_fraction : expected share of documents in the evaluation part (named offline
        corpora and text files; wikitext2 keeps its own split).
    """
    if name in _LOADERS:
        return _LOADERS[name](eval_fraction)
    if os.path.sep in name or os.path.exists(name) or name.endswith(".txt"):
        return _load_text_file(name, eval_fraction)
    import difflib

    close = difflib.get_close_matches(name, list(CORPORA), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise CorpusError(
        f"Unknown corpus '{name}'.{hint} Known corpora: {', '.join(CORPORA)}; "
        "or give the path of a UTF-8 text file."
    )


# --- tokens and windows --------------------------------------------------------------------


def tokenize_texts(texts: Sequence[str], tokenizer) -> torch.Tensor:
    """Join documents with blank lines and tokenize once (SliceGPT protocol).

    Special tokens are added as the tokenizer itself adds them to one text, so a BOS
    token, where the tokenizer uses one, appears only at the very start.
    """
    import torch

    joined = "\n\n".join(texts)
    if not joined.strip():
        raise CorpusError("The selected corpus part holds no text to tokenize.")
    encoded = tokenizer(joined, return_attention_mask=False, verbose=False)
    return torch.tensor(encoded["input_ids"], dtype=torch.long)


def count_windows(n_tokens: int, seqlen: int) -> int:
    if seqlen <= 0:
        raise ValueError(f"seqlen must be positive, got {seqlen}")
    return n_tokens // seqlen


def _too_small(name: str, n_tokens: int, seqlen: int, requested: int) -> CorpusTooSmallError:
    available = count_windows(n_tokens, seqlen)
    advice = (
        f"Ask for at most {available}, use a shorter sequence length, or a larger corpus."
        if available
        else "Use a shorter sequence length or a larger corpus."
    )
    return CorpusTooSmallError(
        f"The {name} text has {n_tokens} tokens, which give {available} non-overlapping "
        f"windows of {seqlen} tokens, but {requested} were requested. {advice}",
        available=available,
    )


def calibration_windows(
    tokens: torch.Tensor,
    nsamples: int,
    seqlen: int,
    *,
    seed: int = 42,
    mode: WindowMode = "random",
    name: str = "calibration",
) -> torch.Tensor:
    """Draw ``nsamples`` calibration windows of ``seqlen`` tokens.

    ``random`` picks windows without replacement from the grid of non-overlapping windows
    with a seeded numpy generator (so no token is seen twice); ``contiguous`` takes the
    first ``nsamples`` windows of the stream.

    Examples
    --------
    >>> import torch
    >>> calibration_windows(torch.arange(10), 2, 3, mode="contiguous").tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    import numpy as np

    if nsamples <= 0:
        raise ValueError(f"nsamples must be positive, got {nsamples}")
    available = count_windows(tokens.numel(), seqlen)
    if nsamples > available:
        raise _too_small(name, tokens.numel(), seqlen, nsamples)
    grid = tokens[: available * seqlen].view(available, seqlen)
    if mode == "contiguous":
        return grid[:nsamples].clone()
    if mode == "random":
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(available, size=nsamples, replace=False))
        return grid[chosen].clone()
    raise ValueError(f"mode must be 'random' or 'contiguous', got {mode!r}")


def evaluation_windows(
    tokens: torch.Tensor, seqlen: int, max_windows: int | None = None, *, name: str = "evaluation"
) -> torch.Tensor:
    """Cut the stream into non-overlapping windows of ``seqlen``; drop the remainder.

    ``max_windows`` keeps only the first windows; asking for more than exist is an error.
    """
    available = count_windows(tokens.numel(), seqlen)
    if available == 0:
        raise _too_small(name, tokens.numel(), seqlen, max_windows or 1)
    n = available if max_windows is None else max_windows
    if n > available:
        raise _too_small(name, tokens.numel(), seqlen, n)
    return tokens[: n * seqlen].view(n, seqlen).clone()
