"""Fast drift verdicts: Evidently's default tests for large reference sets, computed directly
with numpy/scipy on every row (no sampling), so a 1M-row window is judged in a fraction of
Evidently's DataDriftPreset time with the same per-column scores.

Evidently's rules (reference > 1000 rows), which this module reproduces:
  numerical, > 5 distinct values:  Wasserstein distance / std(reference), drift if >= threshold
  numerical, <= 5 distinct values: Jensen-Shannon distance of the value shares, drift if >= threshold
  categorical:                     Jensen-Shannon distance of the value shares, drift if >= threshold
(evidently/legacy/calculations/stattests: registry._get_default_stattest, wasserstein_distance_norm,
jensenshannon + utils.get_binned_data without zero filling).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from components.stages.report.core import drift_columns, snapshot_html

MIN_REFERENCE = 1001  # at or below 1000 rows Evidently switches to KS / chi-square tests


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    # lazy: scipy loads slowly; only this check needs it
    from scipy import stats

    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current) / norm)


def js_shares(reference: np.ndarray, current: np.ndarray) -> float:
    # lazy: scipy loads slowly; only this check needs it
    from scipy.spatial import distance

    keys, inverse = np.unique(np.concatenate([reference, current]), return_inverse=True)
    ref_counts = np.bincount(inverse[: len(reference)], minlength=len(keys)) / len(reference)
    cur_counts = np.bincount(inverse[len(reference):], minlength=len(keys)) / len(current)
    return float(distance.jensenshannon(ref_counts, cur_counts))


def js_histograms(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance of two histograms given as counts (e.g. token hash buckets)."""
    # lazy: scipy loads slowly; only this check needs it
    from scipy.spatial import distance

    r, c = reference.sum(), current.sum()
    if not r or not c:
        return float("nan")
    return float(distance.jensenshannon(reference / r, current / c))


def column_drift(reference: np.ndarray, current: np.ndarray, kind: str, numeric_threshold: float,
                 categorical_threshold: float) -> dict[str, Any]:
    if kind == "numerical":
        distinct = len(np.unique(np.concatenate([reference, current])))
        if distinct > 5:
            score, method, threshold = wasserstein_normed(reference, current), "wasserstein", numeric_threshold
        else:
            score, method, threshold = js_shares(reference, current), "jensenshannon", categorical_threshold
    else:
        score, method, threshold = js_shares(reference, current), "jensenshannon", categorical_threshold
    return {"method": method, "score": score, "threshold": threshold, "drifted": bool(score >= threshold)}


def fast_verdict(reference: dict[str, np.ndarray], current: dict[str, np.ndarray], kinds: dict[str, str],
                 numeric_threshold: float = 0.1, categorical_threshold: float = 0.1,
                 drift_share: float = 0.5) -> dict[str, Any]:
    """Per-column drift and the dataset verdict (drifted share >= drift_share), Evidently's way."""
    n_ref = len(next(iter(reference.values())))
    if n_ref < MIN_REFERENCE:
        # Evidently picks KS / chi-square / z tests for small references: small is cheap, ask it.
        verdict, _ = evidently_verdict(reference, current, kinds, numeric_threshold, categorical_threshold,
                                       drift_share)
        return verdict | {"engine": "evidently (reference <= 1000 rows)"}
    columns = {name: column_drift(reference[name], current[name], kind, numeric_threshold, categorical_threshold)
               for name, kind in kinds.items()}
    share = sum(c["drifted"] for c in columns.values()) / max(len(columns), 1)
    return {"dataset_drift": share >= drift_share, "drifted_share": share, "drift_share_threshold": drift_share,
            "columns": columns, "engine": "vectorized",
            "rows_compared": {"reference": n_ref, "current": len(next(iter(current.values())))}}


def evidently_verdict(reference: dict[str, np.ndarray], current: dict[str, np.ndarray], kinds: dict[str, str],
                      numeric_threshold: float = 0.1, categorical_threshold: float = 0.1,
                      drift_share: float = 0.5, html: bool = False) -> tuple[dict[str, Any], str | None]:
    """Evidently's DataDriftPreset on the same columns: the report users read, and the yardstick
    the fast verdict is checked against (tests, bench)."""
    # lazy: pandas loads slowly; only Evidently's input needs it
    import pandas as pd

    # lazy: Evidently loads in seconds; only its report needs it
    from evidently import DataDefinition, Dataset, Report

    # lazy: Evidently loads in seconds; only its report needs it
    from evidently.presets import DataDriftPreset


    numerical = [c for c, k in kinds.items() if k == "numerical"]
    categorical = [c for c, k in kinds.items() if k != "numerical"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    ref = pd.DataFrame({c: reference[c] for c in kinds})
    cur = pd.DataFrame({c: current[c] for c in kinds})
    preset = DataDriftPreset(drift_share=drift_share, num_threshold=numeric_threshold,
                             cat_threshold=categorical_threshold)
    snapshot = Report([preset]).run(current_data=Dataset.from_pandas(cur, data_definition=definition),
                                    reference_data=Dataset.from_pandas(ref, data_definition=definition))
    columns, share = drift_columns(snapshot)
    verdict = {"dataset_drift": share >= drift_share, "drifted_share": share, "drift_share_threshold": drift_share,
               "columns": columns, "rows_compared": {"reference": len(ref), "current": len(cur)}}
    page = snapshot_html(snapshot) if html else None
    return verdict, page
