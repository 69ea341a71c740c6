"""The one image setting every component uses: change the registry or tag here (or through the
environment at compile time) and every compiled pipeline follows."""

from __future__ import annotations

import os

REGISTRY = os.environ.get("CONVEYOR_REGISTRY", "ghcr.io/conveyor-mlops")
TAG = os.environ.get("CONVEYOR_IMAGE_TAG", "0.1.0")
COMPONENT_IMAGE = f"{REGISTRY}/conveyor-component:{TAG}"
TRAINING_IMAGE = f"{REGISTRY}/conveyor-training:{TAG}"   # CUDA torch: the train step and Katib trials
PREDICTOR_IMAGE = f"{REGISTRY}/conveyor-predictor:{TAG}"  # the KServe model server (ServingRuntime)

# image name -> Dockerfile, for `make images`
DOCKERFILES = {COMPONENT_IMAGE: "images/component.Dockerfile", TRAINING_IMAGE: "images/training.Dockerfile",
               PREDICTOR_IMAGE: "images/predictor.Dockerfile"}
