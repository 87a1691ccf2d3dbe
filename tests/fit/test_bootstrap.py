from __future__ import annotations

import numpy as np
import pytest

from fit.bootstrap import paired_bootstrap, percentile_interval


def test_bootstrap_is_seeded_and_its_spread_matches_the_standard_error():
    rng = np.random.default_rng(0)
    items = (rng.random((2, 400)) < 0.7).astype(float)
    a = paired_bootstrap(items, "acc", n_boot=4000, seed=3)
    b = paired_bootstrap(items, "acc", n_boot=4000, seed=3)
    np.testing.assert_array_equal(a, b)
    p = items.mean(axis=1)
    np.testing.assert_allclose(a.std(axis=1), np.sqrt(p * (1 - p) / 400), rtol=0.06)
    lower, upper = percentile_interval(a[0])
    assert lower < p[0] < upper


def test_pairing_keeps_the_correlation_between_cells():
    rng = np.random.default_rng(1)
    window = rng.normal(3.0, 0.5, 300)  # hard windows are hard for every width
    nll = np.stack([window, window + 0.2 + rng.normal(0, 0.02, 300)])
    boot = paired_bootstrap(nll, "ppl", n_boot=2000, seed=0)
    ratio = boot[1] / boot[0]
    # exp(0.2 + small noise): the paired ratio is far tighter than either cell.
    assert np.std(np.log(ratio)) < 0.1 * np.std(np.log(boot[0]))
    assert np.exp(nll.mean(axis=1)) == pytest.approx([np.exp(window.mean()), np.exp(nll[1].mean())])
