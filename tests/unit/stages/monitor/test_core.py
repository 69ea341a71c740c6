"""Drift: the fast column verdicts agree with Evidently column by column."""

from __future__ import annotations

import numpy as np
import pytest

from components.stages.monitor.core import evidently_verdict, fast_verdict


def _tables(n: int, shift: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref = {"chars": rng.lognormal(6, 1, n), "digits": rng.beta(1, 20, n), "urls": rng.poisson(0.3, n).astype(float),
           "label": rng.choice(["ham", "spam"], n, p=[0.7, 0.3])}
    cur = {"chars": rng.lognormal(6 + shift, 1, n), "digits": rng.beta(1, 20 - 10 * shift, n),
           "urls": rng.poisson(0.3 + shift, n).astype(float),
           "label": rng.choice(["ham", "spam"], n, p=[0.7 - shift / 2, 0.3 + shift / 2])}
    kinds = {"chars": "numerical", "digits": "numerical", "urls": "numerical", "label": "categorical"}
    return ref, cur, kinds


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.4])
def test_fast_verdict_matches_evidently_column_by_column(shift):
    ref, cur, kinds = _tables(5000, shift)
    fast = fast_verdict(ref, cur, kinds)
    slow, _ = evidently_verdict(ref, cur, kinds)
    assert fast["dataset_drift"] == slow["dataset_drift"]
    assert fast["drifted_share"] == pytest.approx(slow["drifted_share"])
    for name in kinds:
        assert fast["columns"][name]["score"] == pytest.approx(slow["columns"][name]["score"], rel=1e-9, abs=1e-12)
        assert fast["columns"][name]["drifted"] == slow["columns"][name]["drifted"]
    # `urls` has <= 5 distinct values at no shift: Evidently (and we) use Jensen-Shannon there
    assert {c["method"] for c in fast["columns"].values()} <= {"wasserstein", "jensenshannon"}
    assert fast["dataset_drift"] == (shift >= 0.4)
