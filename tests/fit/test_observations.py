"""The observation table: CSV schema, sparsity rule, validation messages, replicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fit.observations import KNOWN_CHANCE, ObservationError, Observations
from fit.testing import synthetic_replicates, synthetic_table
from theory import kept_dim_from_sparsity

HEADER = "model,hidden_size,kept_dim,sparsity,metric,value,stderr,source\n"


def _csv(tmp_path, text: str, header: str = HEADER):
    path = tmp_path / "results.csv"
    path.write_text(header + text)
    return path


def test_sparsity_converts_by_slicegpt_rule_and_explicit_kept_dim_wins(tmp_path):
    path = _csv(
        tmp_path,
        "m,576,,0,ppl,20.2,,paper\n"
        "m,576,,0.1,ppl,30.5,0.4,paper\n"
        "m,576,500,0.3,ppl,40.0,,paper\n"
        "m,576,,0.25,acc:piqa,0.6,,paper\n"
        "m,576,576,,acc:piqa,0.7,,paper\n",
    )
    obs = Observations.from_csv(path)
    t = obs.table
    assert list(t.kept_dim) == [576, kept_dim_from_sparsity(576, 0.1), 500, 432, 576]
    assert kept_dim_from_sparsity(576, 0.1) == 512  # int(518.4) = 518, down to a multiple of 8
    assert list(t.protocol.unique()) == ["unlabelled"]
    assert t.chance[t.metric == "acc:piqa"].tolist() == [KNOWN_CHANCE["piqa"]] * 2
    assert np.isnan(t.stderr.iloc[0]) and t.stderr.iloc[1] == 0.4
    assert t.sparsity.iloc[2] == pytest.approx(1 - 500 / 576)
    assert obs.groups() == [("m", "unlabelled", "ppl"), ("m", "unlabelled", "acc:piqa")]


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            "m,576,,0,ppl,20.2,,x\nm,576,600,,ppl,30,,x\n",
            "line 3: kept_dim 600 exceeds hidden_size 576",
        ),
        (
            "m,576,,0,ppl,20.2,,x\nm,0,500,,ppl,30,,x\n",
            "line 3: hidden_size must be a positive integer",
        ),
        (
            "m,576,,0,ppl,20.2,,x\nm,576,-8,,ppl,30,,x\n",
            "line 3: kept_dim must be a positive integer",
        ),
        ("m,576,512,,ppl,30,,x\n", "has no dense row (kept_dim = hidden_size = 576) for ppl"),
        ("m,576,576,,PPL,20,,x\n", "line 2: unknown metric 'PPL'"),
        (
            "m,576,576,,acc:piqa,71.5,,x\n",
            "line 2: an accuracy must be a fraction in [0, 1], got 71.5 (divide percentages by 100)",
        ),
        ("m,576,576,,ppl,0.5,,x\n", "line 2: a perplexity must exceed 1"),
        ("m,576,576,,ppl,abc,,x\n", "line 2: value must be a number, got 'abc'"),
        ("m,576,,1.2,ppl,20,,x\n", "line 2: sparsity must lie in [0, 1)"),
        ("m,576,576,,ppl,20,,x\nm,576,576,,ppl,21,,x\n", "line 3: a second row for model 'm'"),
    ],
)
def test_bad_rows_name_the_line_and_column(tmp_path, rows, message):
    with pytest.raises(ObservationError) as error:
        Observations.from_csv(_csv(tmp_path, rows))
    assert message in str(error.value)
    assert str(tmp_path / "results.csv") in str(error.value)


def test_missing_columns_and_unlabelled_protocols(tmp_path):
    path = _csv(tmp_path, "m,576,ppl,20\n", header="model,hidden_size,metric,value\n")
    with pytest.raises(
        ObservationError, match=r"missing column\(s\) source, kept_dim \(or sparsity\)"
    ):
        Observations.from_csv(path)
    path = _csv(
        tmp_path,
        "m,576,576,ppl,20,x,a\nm,576,512,ppl,30,x,\n",
        header="model,hidden_size,kept_dim,metric,value,source,protocol\n",
    )
    with pytest.raises(ObservationError, match="line 3: protocol is empty"):
        Observations.from_csv(path)
    with pytest.raises(ObservationError, match="does not exist"):
        Observations.from_csv(tmp_path / "nope.csv")


def test_two_hidden_sizes_for_one_model_are_refused():
    table = pd.DataFrame(
        {
            "model": "m",
            "hidden_size": [64, 128],
            "kept_dim": [64, 128],
            "metric": "ppl",
            "value": 5.0,
        }
    )
    with pytest.raises(ObservationError, match="more than one hidden_size"):
        Observations(table)


def test_replicates_fill_stderr_and_are_checked():
    table = synthetic_table("ppl_reported", {}, noise=0.01, kept_dims=(1024, 768, 512))
    table = pd.concat(
        [table, synthetic_table("acc_parallel", {}, dense_value=0.7, kept_dims=(1024, 768))]
    )
    obs = synthetic_replicates(table, units=100, seed=1)
    nll = obs.replicates[("synthetic", "synthetic", 768, "ppl")]
    row = obs.table[(obs.table.kept_dim == 768) & (obs.table.metric == "ppl")].iloc[0]
    assert row.value == pytest.approx(np.exp(nll.mean()))
    assert row.stderr == pytest.approx(row.value * nll.std(ddof=1) / 10)
    items = obs.replicates[("synthetic", "synthetic", 768, "acc:synthetic")]
    acc_row = obs.table[(obs.table.kept_dim == 768) & (obs.table.metric == "acc:synthetic")]
    assert acc_row.stderr.iloc[0] == pytest.approx(items.std(ddof=1) / 10)
    kept, matrix = obs.replicate_matrix("synthetic", "synthetic", "ppl")
    assert kept == [1024, 768, 512] and matrix.shape == (3, 100)

    bad = dict(obs.replicates)
    bad[("synthetic", "synthetic", 768, "ppl")] = nll + 0.1
    with pytest.raises(ObservationError, match="replicates for .* give"):
        Observations(obs.table, bad)
    bad = dict(obs.replicates)
    bad[("synthetic", "synthetic", 768, "ppl")] = np.r_[nll, nll.mean()]
    with pytest.raises(ObservationError, match="different lengths"):
        Observations(obs.table, bad)
    with pytest.raises(ObservationError, match="no row in the table"):
        Observations(obs.table, {("other", "synthetic", 768, "ppl"): nll})


def test_save_and_load_round_trip(tmp_path):
    table = synthetic_table("ppl_power", {"alpha": 1.1}, stderr=True, kept_dims=(1024, 768, 512))
    obs = synthetic_replicates(table, units=50)
    obs.save(tmp_path)
    back = Observations.load(tmp_path)
    pd.testing.assert_frame_equal(back.table, obs.table, check_dtype=False)
    assert back.replicates.keys() == obs.replicates.keys()
    for key, array in obs.replicates.items():
        np.testing.assert_array_equal(back.replicates[key], array)
