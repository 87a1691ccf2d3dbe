from __future__ import annotations

import pytest
import torch

from measure.data import (
    CORPORA,
    calibration_windows,
    clean_wiki_markup,
    evaluation_windows,
    load_corpus,
    split_documents,
    tokenize_texts,
)
from measure.errors import CorpusError, CorpusTooSmallError


def test_enwiki_sample_is_clean_article_text(enwiki):
    documents = enwiki.calibration + enwiki.evaluation
    assert len(documents) == 106  # 206 pages in the dump, 100 of them redirects
    assert not any(doc.lstrip().lower().startswith("#redirect") for doc in documents)
    text = "\n".join(documents)
    for leftover in ("{{", "}}", "[[", "]]", "'''", "<ref", "&nbsp;"):
        assert leftover not in text, leftover
    assert not any(line.startswith("==") for line in text.splitlines())
    assert any(doc.startswith("Anarchism is a political philosophy") for doc in documents)


def test_enwiki_split_is_deterministic_and_disjoint(enwiki):
    again = load_corpus("enwiki-sample")
    assert again.calibration == enwiki.calibration
    assert again.evaluation == enwiki.evaluation
    assert again.sha256 == enwiki.sha256
    assert not set(enwiki.calibration) & set(enwiki.evaluation)
    assert 0 < len(enwiki.evaluation) < len(enwiki.calibration)


def test_corpus_hash_tracks_content_and_split(enwiki):
    other_split = load_corpus("enwiki-sample", eval_fraction=0.3)
    assert other_split.sha256 != enwiki.sha256
    described = enwiki.describe()
    assert described["corpus_sha256"] == enwiki.sha256
    assert described["evaluation_documents"] == len(enwiki.evaluation)
    assert len(enwiki.sha256) == 64


def test_split_documents_by_key_is_stable_under_reordering():
    keys = [f"doc-{i}" for i in range(200)]
    docs = [f"text {i}" for i in range(200)]
    cal, ev = split_documents(keys, docs, 0.25)
    cal_r, ev_r = split_documents(keys[::-1], docs[::-1], 0.25)
    assert set(cal) == set(cal_r) and set(ev) == set(ev_r)
    assert 25 <= len(ev) <= 75  # a hash split lands near the asked fraction
    with pytest.raises(ValueError):
        split_documents(keys, docs, 1.5)


def test_lee_news_has_all_documents():
    corpus = load_corpus("lee-news")
    assert len(corpus.calibration) + len(corpus.evaluation) == 300
    assert corpus.sha256 != load_corpus("enwiki-sample").sha256


def test_clean_wiki_markup_removes_leftovers():
    markup = "==History==\n'''Bold''' and ''italic'' text ( ) here.\n{| class=x\n| cell\n|}\n"
    text = clean_wiki_markup(markup)
    assert "History" in text and "Bold and italic text here." in text
    assert "'" not in text and "|" not in text and "==" not in text


def test_text_file_corpus_split_and_hash(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"Paragraph number {i}." for i in range(20)), encoding="utf-8")
    corpus = load_corpus(str(path))
    assert len(corpus.evaluation) == 2 and len(corpus.calibration) == 18
    assert corpus.evaluation[-1] == "Paragraph number 19."
    path.write_text("\n\n".join(f"Paragraph number {i}!" for i in range(20)), encoding="utf-8")
    assert load_corpus(str(path)).sha256 != corpus.sha256


def test_text_file_single_paragraph_is_cut_by_lines(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("\n".join(f"line {i}" for i in range(10)), encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.calibration[0].splitlines()[-1] == "line 8"
    assert corpus.evaluation == ("line 9",)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "is empty"),
        (b"   \n\n  ", "is empty"),
        (b"\x00\x01binary\x00", "not text"),
        ("caf\u00e9 latin".encode("latin-1") + b"\n\nmore", "not UTF-8"),
        (b"just one line", "single line"),
    ],
)
def test_bad_text_files_are_refused(tmp_path, content, phrase):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=phrase):
        load_corpus(str(path))


def test_missing_text_file_and_unknown_corpus(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(CorpusError, match="Did you mean 'enwiki-sample'"):
        load_corpus("enwiki-sampel")
    assert set(CORPORA) == {"enwiki-sample", "lee-news", "wikitext2"}


def test_wikitext2_offline_names_the_offline_corpora(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CorpusError, match="enwiki-sample") as info:
        load_corpus("wikitext2")
    assert "\n" not in str(info.value)


def test_contiguous_and_random_windows():
    tokens = torch.arange(100)
    first = calibration_windows(tokens, 3, 10, mode="contiguous")
    assert first.tolist()[0] == list(range(10)) and first.shape == (3, 10)
    a = calibration_windows(tokens, 5, 10, seed=1)
    b = calibration_windows(tokens, 5, 10, seed=1)
    c = calibration_windows(tokens, 5, 10, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    starts = a[:, 0].tolist()
    assert all(s % 10 == 0 for s in starts) and len(set(starts)) == 5  # grid, no overlap
    with pytest.raises(ValueError):
        calibration_windows(tokens, 2, 10, mode="sliding")  # type: ignore[arg-type]


def test_too_small_corpus_says_how_many_windows_it_can_give():
    tokens = torch.arange(1000)
    with pytest.raises(CorpusTooSmallError, match="give 3 non-overlapping windows of 256") as info:
        calibration_windows(tokens, 4, 256)
    assert info.value.available == 3
    with pytest.raises(CorpusTooSmallError, match="give 1 non-overlapping"):
        evaluation_windows(tokens, 512, 2)


def test_evaluation_windows_drop_the_remainder():
    windows = evaluation_windows(torch.arange(25), 10)
    assert windows.shape == (2, 10) and windows[-1, -1].item() == 19
    assert evaluation_windows(torch.arange(25), 10, 1).shape == (1, 10)


def test_tokenize_texts_puts_bos_only_at_the_start(tiny_tokenizer):
    tokens = tokenize_texts(["alpha beta", "gamma", "delta beta"], tiny_tokenizer)
    bos = tiny_tokenizer.bos_token_id
    assert tokens[0].item() == bos
    assert (tokens == bos).sum().item() == 1
    single = tiny_tokenizer("alpha beta\n\ngamma\n\ndelta beta")["input_ids"]
    assert tokens.tolist() == single
    with pytest.raises(CorpusError):
        tokenize_texts(["", "  "], tiny_tokenizer)
