"""Statistical correctness against known truths: recovery, coverage, power, size, p-values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import optimize, stats

from fit.inference import adjust, heterogeneity_test, nested_test, tost
from fit.regression import fit_relation, predict
from fit.testing import synthetic_table
from fit.validate import group_rows

D = 1024
DIMS = (1024, 960, 896, 832, 768, 704, 640, 576, 512)
REPS = 200
# Coverage of a 95% interval in REPS seeded repetitions must lie in this band. For a true
# rate of 0.95 the count of misses is Binomial(200, 0.05): P(rate < 0.90) ~ 0.002 and
# P(rate > 0.985) ~ 0.003, while an interval that covers 85% (or 99.9%) fails almost surely.
COVERAGE_BAND = (0.90, 0.985)


def _rows(table: pd.DataFrame) -> pd.DataFrame:
    return group_rows(table, table.metric.iloc[0])


@pytest.mark.parametrize(
    "relation, constants",
    [("ppl_power", {"alpha": 1.3}), ("ppl_affine_free", {"intercept": -0.4, "slope": 1.4})],
)
def test_constants_recovered_and_95pct_intervals_cover_at_nominal_rate(relation, constants):
    names = list(constants)
    truth = np.array([constants[n] for n in names])
    covered = np.zeros(len(names))
    estimates = []
    rng = np.random.default_rng(20240601)
    for _ in range(REPS):
        table = synthetic_table(relation, constants, noise=0.03, seed=rng, kept_dims=DIMS)
        fit = fit_relation(relation, _rows(table))
        assert fit.param_names == tuple(names)
        ci = fit.conf_int(0.05)
        covered += (ci[:, 0] <= truth) & (truth <= ci[:, 1])
        estimates.append(fit.params)
    rate = covered / REPS
    assert np.all(rate >= COVERAGE_BAND[0]) and np.all(rate <= COVERAGE_BAND[1]), rate
    mean = np.mean(estimates, axis=0)
    spread = np.std(estimates, axis=0) / np.sqrt(REPS)
    assert np.all(np.abs(mean - truth) < 4 * spread), (mean, truth)


def test_delta_method_interval_of_a_prediction_covers_the_true_value():
    """The delta-method CI of the mean at a width left out of the fit covers the truth."""
    alpha_true, dense = 1.25, 12.0
    target = pd.DataFrame({"kept_dim": [448], "hidden_size": [D], "dense_value": [dense]})
    true_value = dense ** ((D / 448) ** alpha_true)
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(REPS):
        table = synthetic_table("ppl_power", {"alpha": alpha_true}, noise=0.03, seed=rng)
        fit = fit_relation("ppl_power", _rows(table))
        out = predict("ppl_power", target, fit=fit, alpha=0.05)
        hits += out.ci_lower.iloc[0] <= true_value <= out.ci_upper.iloc[0]
    assert COVERAGE_BAND[0] <= hits / REPS <= COVERAGE_BAND[1]


def test_prediction_interval_covers_new_measurements():
    alpha_true, dense, noise = 1.25, 12.0, 0.03
    target = pd.DataFrame({"kept_dim": [448], "hidden_size": [D], "dense_value": [dense]})
    true_log = np.log(dense) * (D / 448) ** alpha_true
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(REPS):
        table = synthetic_table("ppl_power", {"alpha": alpha_true}, noise=noise, seed=rng)
        out = predict("ppl_power", target, fit=fit_relation("ppl_power", _rows(table)))
        new = np.exp(true_log + noise * rng.standard_normal())
        hits += out.pi_lower.iloc[0] <= new <= out.pi_upper.iloc[0]
    assert COVERAGE_BAND[0] <= hits / REPS <= COVERAGE_BAND[1]


def test_false_law_rejected_with_high_power_and_true_law_at_nominal_size():
    rng = np.random.default_rng(3)
    power = []
    for _ in range(100):
        rows = _rows(synthetic_table("ppl_power", {"alpha": 1.15}, noise=0.03, seed=rng))
        fit0, fit1 = fit_relation("ppl_reported", rows), fit_relation("ppl_power", rows)
        power.append(nested_test(fit0, fit1).reject)
    assert np.mean(power) >= 0.95
    # Under the reported law the exact F test (linear form) rejects at rate alpha:
    # Binomial(400, 0.05) has mean 20 and sd 4.4, so [8, 36] holds with probability > 0.999.
    size = []
    for _ in range(400):
        rows = _rows(synthetic_table("ppl_reported", {}, noise=0.03, seed=rng))
        fit1 = fit_relation("ppl_affine_free", rows)
        fit0 = fit_relation("ppl_reported", rows)
        size.append(nested_test(fit0, fit1).reject)
    assert 8 <= sum(size) <= 36, sum(size)


@pytest.fixture(scope="module")
def fixed_rows() -> pd.DataFrame:
    table = synthetic_table("ppl_power", {"alpha": 1.1}, noise=0.05, seed=123)
    return _rows(table)


def test_joint_test_matches_statsmodels_f_test_on_the_linearised_form(fixed_rows):
    """ln PPL / ln PPL_dense = a + b D/d: H0 a = 0, b = 1 (the reported law)."""
    fit1 = fit_relation("ppl_affine_free", fixed_rows)
    ours = nested_test(fit_relation("ppl_reported", fixed_rows), fit1)
    sliced = fixed_rows[fixed_rows.kept_dim < D]
    y = np.log(sliced.value) / np.log(sliced.dense_value)
    X = sm.add_constant(sliced.hidden_size / sliced.kept_dim)
    X.columns = ["const", "x"]
    reference = sm.OLS(y, X).fit().f_test("const = 0, x = 1")
    assert ours.df == (reference.df_num, reference.df_denom)
    assert ours.statistic == pytest.approx(float(reference.fvalue), rel=1e-8)
    assert ours.pvalue == pytest.approx(float(reference.pvalue), rel=1e-8)
    assert ours.nobs == len(sliced)
    # The intercept and slope are those of the linearised OLS too.
    np.testing.assert_allclose(fit1.params, sm.OLS(y, X).fit().params, rtol=1e-8)


def test_nonlinear_nested_test_matches_independent_curve_fit(fixed_rows):
    sliced = fixed_rows[fixed_rows.kept_dim < D]
    ratio = (D / sliced.kept_dim).to_numpy(float)
    y = np.log(sliced.value.to_numpy(float))
    lnp0 = np.log(12.0)

    def model(r, a):
        return lnp0 * r**a

    (a_hat,), cov = optimize.curve_fit(model, ratio, y, p0=[1.0])
    rss1 = np.sum((y - model(ratio, a_hat)) ** 2)
    rss0 = np.sum((y - model(ratio, 1.0)) ** 2)
    n = len(y)
    F = (rss0 - rss1) / (rss1 / (n - 1))
    fit1 = fit_relation("ppl_power", fixed_rows)
    test = nested_test(fit_relation("ppl_reported", fixed_rows), fit1)
    assert fit1.params[0] == pytest.approx(a_hat, rel=1e-6)
    assert fit1.bse[0] == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-4)
    assert test.statistic == pytest.approx(F, rel=1e-5)
    assert test.pvalue == pytest.approx(stats.f.sf(F, 1, n - 1), rel=1e-5)
    assert test.df == (1.0, float(n - 1))


def test_heterogeneity_matches_statsmodels_model_interaction_fit():
    rng = np.random.default_rng(5)
    groups = {}
    frames = []
    for model, eta in (("a", 0.8), ("b", 0.95), ("c", 0.9)):
        table = synthetic_table(
            "logit_temperature", {"eta": eta}, noise=0.02, seed=rng, model=model
        )
        groups[model] = _rows(table)
        frames.append(table[table.kept_dim < D])
    ours = heterogeneity_test("logit_temperature", groups)
    data = pd.concat(frames)
    data = data.assign(y=np.log(data.value), x=np.log(data.kept_dim / data.hidden_size))
    full = smf.ols("y ~ 0 + x:C(model)", data).fit()
    restricted = smf.ols("y ~ 0 + x", data).fit()
    F, p, df_diff = full.compare_f_test(restricted)
    assert ours.statistic == pytest.approx(F, rel=1e-8)
    assert ours.pvalue == pytest.approx(p, rel=1e-8)
    assert ours.df == (df_diff, full.df_resid)
    assert ours.nobs == len(data)


def test_tost_matches_statsmodels_ztost():
    from statsmodels.stats.weightstats import DescrStatsW

    x = np.random.default_rng(2).normal(0.01, 0.03, 60)
    reference = DescrStatsW(x)
    p_ref, _, _ = reference.ztost_mean(-0.02, 0.02)
    ours = tost(x.mean(), reference.std_mean, -0.02, 0.02)
    assert ours.pvalue == pytest.approx(p_ref, rel=1e-10)
    assert ours.decision == ("equivalent" if p_ref < 0.05 else "not shown equivalent")


def test_holm_and_bh_match_their_definitions():
    from fit.inference import TestResult

    pvalues = [0.001, 0.01, 0.02, 0.04, 0.3]
    family = [
        TestResult(name=str(p), kind="nested", null="", alternative="", pvalue=p) for p in pvalues
    ]
    adjust(family, "holm")
    m = len(pvalues)
    holm = np.maximum.accumulate([min(1.0, (m - i) * p) for i, p in enumerate(pvalues)])
    np.testing.assert_allclose([t.pvalue_adjusted for t in family], holm)
    assert [t.reject_adjusted for t in family] == [True, True, False, False, False]
    adjust(family, "bh")
    bh = np.minimum.accumulate([min(1.0, p * m / (i + 1)) for i, p in enumerate(pvalues)][::-1])[
        ::-1
    ]
    np.testing.assert_allclose([t.pvalue_adjusted for t in family], bh)


def test_too_few_observations_say_so_instead_of_a_number():
    rows = _rows(synthetic_table("ppl_power", {"alpha": 1.0}, kept_dims=(D, 768), noise=0.01))
    fit = fit_relation("ppl_power", rows)
    assert fit.df_resid == 0 and not fit.has_intervals
    assert np.isnan(fit.conf_int()).all()
    assert "too few observations" in fit.summary()
    test = nested_test(fit_relation("ppl_reported", rows), fit)
    assert test.status == "insufficient" and test.pvalue is None and test.statistic is None
    assert "needs more than 1 observations, has 1" in test.note
    assert "insufficient data" in test.summary()
    assert tost(0.01, float("nan"), -0.05, 0.05).status == "insufficient"
    single = heterogeneity_test("ppl_power", {"m": rows})
    assert single.status == "insufficient" and "two models" in single.note
