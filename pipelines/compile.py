"""`conveyor compile`: pipeline YAML (and optionally KFP Pipeline/PipelineVersion resources)."""

from __future__ import annotations

import os

from kfp import compiler

from components.common.config import load_config
from pipelines.data_pipeline import build_data_pipeline


def pipelines_for(config_path: str | None = None) -> dict:
    cfg = load_config(config_path)
    return {"conveyor-data": build_data_pipeline(cfg)}


def compile_all(out_dir: str = "dist", k8s: bool = False, config_path: str | None = None) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, pipeline in pipelines_for(config_path).items():
        path = os.path.join(out_dir, f"{name}.yaml")
        compiler.Compiler().compile(pipeline, path)
        written[name] = path
        if k8s:
            from kfp.compiler.compiler_utils import KubernetesManifestOptions

            k8s_path = os.path.join(out_dir, f"{name}.k8s.yaml")
            compiler.Compiler().compile(
                pipeline, k8s_path, kubernetes_manifest_format=True,
                kubernetes_manifest_options=KubernetesManifestOptions(
                    pipeline_name=name, pipeline_version_name=f"{name}-v1", namespace="kubeflow",
                    include_pipeline_manifest=True))
            written[f"{name} (k8s)"] = k8s_path
    return {"compiled": written}
