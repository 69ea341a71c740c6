"""Who runs the featurize step, by `data.engine` and where the step runs:
- "local": this process, streamed (executor.featurize_split_files);
- "spark" in this process (kfp.local, the CLI): the same, with the vocabulary fit as a Spark
  aggregation in `local[N]`;
- "spark" on a cluster: the whole step as a SparkApplication (components/cluster/sparkapp.py rules:
  deterministic name, adopt or refuse, delete on failure, timeout or SIGTERM). The step stages its
  split files in the store (named by dataset, version and split settings, so a retry reuses
  them), the driver (spark_main.py) fits and encodes with Spark tasks over row-group ranges and
  publishes the feature cache entry, and the step copies that entry into its own outputs. When
  the cache already has the entry, nothing is launched.
Every path gives the same featurizer and feature files (tests/unit/stages/featurize/test_spark_fit.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from components.cluster import sparkapp
from components.cluster.images import COMPONENT_IMAGE
from components.cluster.kube import in_a_pod
from components.common.config import ClusterConfig, SparkConfig, validate_section
from components.common.errors import ConfigError
from components.common.hashing import sha256_of_value
from components.common.layout import featurize_job_result_key, featurize_staged_key
from components.common.spark import check_engine
from components.common.storage import open_store
from components.stages.featurize.config import FeaturesConfig
from components.stages.featurize.core import SPLITS
from components.stages.featurize.executor import cache_prefix, featurize_split_files, fetch_cached, stats_of_files
from components.stages.split.config import SplitConfig

DRIVER_MODULE = "components.stages.featurize.spark_main"


@dataclass(frozen=True)
class FeaturizeJob:
    """What the driver featurizes (JSON-able): the store, the version, the settings, the staged files."""
    store: str
    dataset: str
    version: str
    split: dict
    features: dict
    staged: dict
    parallelism: int = 2
    shuffle_partitions: int = 64

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def spark_application(run_id: str, job: FeaturizeJob, spark: SparkConfig, cluster: ClusterConfig,
                      image: str) -> dict[str, Any]:
    job = FeaturizeJob(**{**job.to_json(), "parallelism": spark.executors * spark.executor_cores,
                          "shuffle_partitions": spark.shuffle_partitions})
    return sparkapp.spark_application("featurize", run_id, job.to_json(), DRIVER_MODULE, featurize_job_result_key,
                                      spark, cluster, image)


def run_featurize(store_uri: str, split_paths: dict[str, str], split_meta: dict[str, Any], features_config: dict,
                  featurizer_path: str, out_paths: dict[str, str], engine: str = "local",
                  engine_config: dict[str, Any] | None = None, run_id: str = "", on_cluster: bool | None = None,
                  api=None, log=print) -> dict[str, Any]:
    """engine_config: {"spark": data.spark, "cluster": cluster} sections (for engine=spark)."""
    check_engine(engine)
    on_cluster = in_a_pod() if on_cluster is None else on_cluster
    if engine == "local" or not on_cluster:
        return featurize_split_files(store_uri, split_paths, split_meta, features_config, featurizer_path,
                                     out_paths, engine, engine_config)
    spark = validate_section(SparkConfig, (engine_config or {}).get("spark", {}), "data.spark")
    cluster = validate_section(ClusterConfig, (engine_config or {}).get("cluster", {}), "cluster")
    if not run_id:
        raise ConfigError("engine=spark on a cluster needs the run id (the SparkApplication's name comes from it)")
    cfg = FeaturesConfig.model_validate(features_config)
    store = open_store(store_uri)
    dataset, version = split_meta["dataset"], split_meta["version"]
    cache = store.url(cache_prefix(dataset, version, SplitConfig.model_validate(split_meta["split"]), cfg))
    if not store.exists(f"{cache[len(store.uri.rstrip('/')) + 1:]}/done.json"):
        digest = sha256_of_value({"dataset": dataset, "version": version, "split": split_meta["split"]})[:20]
        staged = {}
        for name in SPLITS:
            staged[name] = featurize_staged_key(digest, name)
            if not store.exists(staged[name]):
                store.upload(split_paths[name], staged[name])
        job = FeaturizeJob(store_uri, dataset, version, split_meta["split"], cfg.model_dump(mode="json"), staged)
        manifest = spark_application(run_id, job, spark, cluster, spark.image or COMPONENT_IMAGE)
        result = sparkapp.launch(api or sparkapp.KubernetesSparkApplicationApi(), store, manifest,
                                 featurize_job_result_key(manifest["metadata"]["name"]), spark.timeout_s, log=log)
        cache = result["cache"]
    else:
        log(f"feature cache {cache} has this encoding: nothing to launch")
    fetch_cached(store, cache, featurizer_path, out_paths)
    return {"stats": stats_of_files(featurizer_path, out_paths), "cache": cache, "dataset": dataset,
            "version": version, "split": split_meta["split"], "features": cfg.model_dump(mode="json")}
