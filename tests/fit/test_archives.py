from __future__ import annotations

import numpy as np
import pytest

from fit.archives import observations_from_sweep
from measure.archive import open_sweep
from measure.sweep import Sweep


@pytest.fixture(scope="module")
def tiny_sweep(tiny_sweep_config, tmp_path_factory):
    config = tiny_sweep_config
    out = tmp_path_factory.mktemp("sweep")
    Sweep(config, out, progress=False).run([32, 24, 16])
    return open_sweep(out)


def test_sweep_becomes_observations_with_paired_replicates(tiny_sweep):
    obs = observations_from_sweep(tiny_sweep)
    table = obs.table
    ppl = table[table.metric == "ppl"].set_index("kept_dim")
    assert sorted(ppl.index) == [16, 24, 32]
    np.testing.assert_allclose(ppl.loc[24, "value"], float(tiny_sweep.ppl.sel(kept_dim=24)))
    assert ppl.loc[32, "retained_energy"] == 1.0
    assert 0 < ppl.loc[16, "retained_energy"] < 1
    model, protocol = table.model.iloc[0], table.protocol.iloc[0]
    for d in (16, 24, 32):
        nll = obs.replicates[(model, protocol, d, "ppl")]
        assert nll.shape == (3,)
        np.testing.assert_allclose(np.exp(nll.mean()), ppl.loc[d, "value"])
    tau = table[table.metric == "tau"].set_index("kept_dim")
    assert tau.loc[32, "value"] == 1.0 and tau.loc[32, "source"] == "identity at d = D"
    np.testing.assert_allclose(tau.loc[16, "value"], float(tiny_sweep.logit_scale.sel(kept_dim=16)))
