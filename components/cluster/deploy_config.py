"""Deployment settings (pure: no SDK imports, so the typed config can include them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "spam-classifier"
    namespace: str = "kubeflow-user"
    mode: Literal["knative", "standard"] = "knative"
    runtime: str = "conveyor-predictor"   # the ServingRuntime that runs the predictor image
    model_format: str = "conveyor"
    store: str = "s3://conveyor"          # models live at <store>/models/<model>/<version>
    service_account: str = "conveyor-predictor"  # bound to the S3 secret with KServe's s3-* annotations
    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = Field(0, ge=0)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(3, ge=1)
    standard_canary_replicas: int = Field(1, ge=1)
