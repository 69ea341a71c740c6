"""Cluster trigger: submit the registered continuous-training pipeline through the KFP API, with
the new data sources and the champion's training parameters. Idempotent per decision: a run with
the same name (derived from the decision record) is not submitted twice."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from components.common.errors import ClusterError
from components.stages.monitor.trigger import history
from components.stages.registry.store import load_card
from components.stages.train.config import TrainingConfig


def retrain_parameters(store, model: str, config: dict[str, Any], features: dict[str, Any]) -> dict[str, Any]:
    """The continuous-training run's `config` and `features_config` parameters with the champion's
    own training and feature parameters (a retrain, not a search)."""

    card = load_card(store, model, "champion")
    merged = json.loads(json.dumps(config))
    merged["train"] = {**merged.get("train", {}), **card["params"]["train"]}
    merged["features"] = {**features, **card["params"].get("features", {})}
    merged["best_trial"] = "retrain"  # no search runs, so there is no trial to keep
    # The sections changed here are validated; the rest came from the run's own (validated) config.
    # Dumped the way pipeline parameters need it (no nulls).
    checked = TrainingConfig.of(merged, origin="retrain config").model_dump(mode="json", exclude_none=True)
    merged["train"] = checked["train"]
    del merged["features"]  # a parameter of its own: one place per setting
    return {"config": merged, "features_config": checked["features"]}


def submit_retraining(store, model: str, sources: list[str], kfp_host: str, pipeline_name: str, experiment: str,
                      config: dict[str, Any], features: dict[str, Any], client=None) -> str:
    """`config` is the continuous-training pipeline's `config` parameter, `features` its
    `features_config` (the champion's values replace both's training parameters)."""

    decisions = [d for d in history(store, model) if d.get("action") == "retrain"]
    if not decisions:
        raise ClusterError(f"no retrain decision recorded for {model}; nothing to submit")
    key = hashlib.sha256(json.dumps(decisions[-1], sort_keys=True, default=str).encode()).hexdigest()[:10]
    run_name = f"retrain-{model}-{key}"
    if client is None:
        # lazy: kfp loads in ~1 s; only pipeline code needs it
        import kfp

        client = kfp.Client(host=kfp_host or None)
    try:
        existing = client.list_runs(page_size=50, sort_by="created_at desc").runs or []
        for run in existing:
            if run.display_name == run_name:
                return run.run_id  # a retried step adopts its own run
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            raise ClusterError(f"pipeline {pipeline_name!r} is not registered in KFP (see README: upload it)")
        versions = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc", page_size=1)
        version_id = versions.pipeline_versions[0].pipeline_version_id
        try:
            experiment_id = client.get_experiment(experiment_name=experiment).experiment_id
        except Exception:  # kfp raises a plain ValueError/ApiException when it does not exist
            experiment_id = client.create_experiment(experiment).experiment_id
        params = {"sources": sources, **retrain_parameters(store, model, config, features)}
        run = client.run_pipeline(experiment_id=experiment_id, job_name=run_name, pipeline_id=pipeline_id,
                                  version_id=version_id, params=params)
        return run.run_id
    except ClusterError:
        raise
    except Exception as exc:
        raise ClusterError(f"submitting {pipeline_name} to KFP at {kfp_host}: {exc}") from exc
