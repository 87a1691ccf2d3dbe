from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from measure.metrics import perplexity
from measure.tasks import check_tasks, run_items
from measure.testing import tiny_model


class Bigram(torch.nn.Module):
    """A model whose next-token distribution depends only on the current token: the NLL
    of any sequence can be written down by hand."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, use_cache=False):
        class Out:
            pass

        out = Out()
        out.logits = self.table[input_ids]
        return out


def test_perplexity_of_a_known_sequence_matches_a_hand_computation():
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    model = Bigram(probs.log())
    windows = torch.tensor([[0, 1, 1, 2], [2, 0, 0, 1]])
    result = perplexity(model, windows, batch_size=1, keep_token_nll=True)
    w0 = -(math.log(0.25) + math.log(0.8) + math.log(0.1)) / 3
    w1 = -(math.log(1 / 3) + math.log(0.5) + math.log(0.25)) / 3
    np.testing.assert_allclose(result.window_nll, [w0, w1], rtol=1e-6)
    assert result.ppl == pytest.approx(math.exp((w0 + w1) / 2), rel=1e-6)
    np.testing.assert_allclose(
        result.token_nll[0], [-math.log(0.25), -math.log(0.8), -math.log(0.1)], rtol=1e-6
    )


def test_window_nll_adds_up_to_the_reported_perplexity():
    model = tiny_model("llama", dtype=torch.float32, seed=1)
    windows = torch.randint(
        0, model.config.vocab_size, (5, 9), generator=torch.Generator().manual_seed(0)
    )
    result = perplexity(model, windows, batch_size=2, keep_token_nll=True)
    assert result.ppl == pytest.approx(math.exp(result.window_nll.mean()), rel=1e-12)
    np.testing.assert_allclose(result.token_nll.mean(axis=1), result.window_nll, rtol=1e-6)
    # batching does not change the numbers
    single = perplexity(model, windows, batch_size=1)
    np.testing.assert_allclose(single.window_nll, result.window_nll, rtol=1e-5)
    with torch.no_grad():
        logits = model(input_ids=windows).logits
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    assert result.mean_nll == pytest.approx(nll.item(), rel=1e-5)


def test_bad_windows_are_refused():
    model = tiny_model("llama", dtype=torch.float32)
    with pytest.raises(ValueError):
        perplexity(model, torch.zeros(3, 1, dtype=torch.long))


def _choice_logprob(model, tokenizer, query: str, choice: str) -> float:
    context = tokenizer(query)["input_ids"]
    whole = tokenizer(query + choice)["input_ids"]
    continuation = whole[len(context) :]
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    start = len(context)
    return float(sum(logp[start - 1 + i, t] for i, t in enumerate(continuation)))


@pytest.mark.integration
def test_accuracy_on_a_handmade_task_matches_a_hand_computation(smollm2, tmp_path):
    items = [
        {
            "id": "a",
            "query": "The capital of France is",
            "choices": [" Paris", " banana", " seven"],
            "gold": 0,
        },
        {
            "id": "b",
            "query": "Two plus two equals",
            "choices": [" blue", " four", " Tuesday"],
            "gold": 1,
        },
        {
            "id": "c",
            "query": "The opposite of hot is",
            "choices": [" cold", " warm", " loud"],
            "gold": 2,
        },
        {
            "id": "d",
            "query": "Water freezes at zero degrees",
            "choices": [" Celsius", " miles"],
            "gold": 0,
        },
    ]
    results = run_items(smollm2.model, smollm2.tokenizer, {"handmade": items}, directory=tmp_path)
    expected = []
    for item in items:
        scores = [
            _choice_logprob(smollm2.model, smollm2.tokenizer, item["query"], c)
            for c in item["choices"]
        ]
        expected.append(int(np.argmax(scores) == item["gold"]))
    got = results["handmade"]
    assert got.item_id == ("a", "b", "c", "d")
    assert got.correct.tolist() == expected
    assert got.accuracy == pytest.approx(np.mean(expected))
    assert expected[2] == 0 and expected[0] == 1  # the item built to be wrong is scored wrong


def test_unknown_task_suggests_the_closest():
    from measure.errors import UsageError

    with pytest.raises(UsageError, match="Did you mean 'analogy_capitals'"):
        check_tasks(["analogy_capital"])
