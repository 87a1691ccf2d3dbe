"""SliceGPT on the real SmolLM2-135M (CPU): fusion and rotation are exact at d = D."""

from __future__ import annotations

import copy

import pytest
import torch

from measure.adapters import get_adapter
from measure.data import calibration_windows, evaluation_windows, tokenize_texts
from measure.metrics import perplexity
from measure.slicing import slice_model
from theory import sliced_parameter_count
from theory.architecture import SMOLLM2_135M

pytestmark = pytest.mark.integration

EVAL_WINDOWS = 2
SEQLEN = 512


@pytest.fixture(scope="module")
def smollm2_windows(smollm2, enwiki):
    calibration = tokenize_texts(enwiki.calibration[:40], smollm2.tokenizer)
    evaluation = tokenize_texts(enwiki.evaluation, smollm2.tokenizer)
    return (
        calibration_windows(calibration, 4, 128, seed=42),
        evaluation_windows(evaluation, SEQLEN, max_windows=EVAL_WINDOWS),
    )


def test_smollm2_facts(smollm2):
    assert get_adapter(smollm2.model).facts == SMOLLM2_135M


def test_fusion_and_rotation_at_full_width_keep_perplexity(smollm2, smollm2_windows):
    calibration, evaluation = smollm2_windows
    dense = perplexity(smollm2.model, evaluation, batch_size=EVAL_WINDOWS).ppl
    model = copy.deepcopy(smollm2.model)  # the session fixture stays dense
    result = slice_model(model, calibration, kept_dim=576, batch_size=4, progress=False)
    rotated = perplexity(model, evaluation, batch_size=EVAL_WINDOWS).ppl
    assert abs(rotated / dense - 1) < 1e-3, (dense, rotated)
    # The shared model is untouched and still tied.
    assert smollm2.model.lm_head.weight is smollm2.model.model.embed_tokens.weight
    assert result.parameter_count() == sliced_parameter_count(SMOLLM2_135M, 576)
    with torch.no_grad():
        probe = evaluation[:1, :64]
        a = smollm2.model(input_ids=probe, use_cache=False).logits
        b = model(input_ids=probe, use_cache=False).logits
    assert (a - b).abs().max() < 1e-2 * a.abs().max()
