# The training / trial image (CUDA): the `train` step and every Katib trial run the training
# entrypoint in it on GPU nodes. PyTorch's CUDA wheels bundle the CUDA runtime libraries, so the
# base needs no CUDA toolkit; the node's NVIDIA driver comes in through the container toolkit.
# Build from the repository root (`make images`):
#   docker build -f images/training.Dockerfile -t ghcr.io/conveyor-mlops/conveyor-training:0.1.0 .

# BASE_IMAGE: any Debian-based image with python3.11 and pip on PATH (`make images` on a machine with
# no registry builds one from Debian packages: images/build.py, images/base.Dockerfile).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
# marks the build stage, so images/build.py can drop it once the image is built (2-3 GB each)
LABEL conveyor.dev/stage=build
# UV_COMPILE_BYTECODE: uv writes no .pyc by default, and a container compiles what it imports on every
# start (torch and kserve: seconds per process, per pod) unless they were compiled here.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1
RUN pip install uv==0.13.9
WORKDIR /src
COPY pyproject.toml ./
# torch==2.13.0 from PyPI is the CUDA build (with its nvidia-* runtime wheels); the rest is pinned
# by pyproject.toml. TORCH_INDEX names another index (e.g. a CUDA-version index); empty = PyPI (or
# uv's configured sources: `make images` on a machine without a GPU builds it with CPU torch).
ARG TORCH_INDEX=
RUN uv venv /opt/conveyor && \
    uv pip install --python /opt/conveyor/bin/python \
      ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.13.0 && \
    uv pip install --python /opt/conveyor/bin/python -r pyproject.toml
# The dependencies above are a layer of their own (pinned by pyproject.toml, with its [tool.uv]
# overrides): a change to the code below rebuilds in seconds.
COPY README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
RUN uv pip install --python /opt/conveyor/bin/python --no-deps .

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/conveyor-mlops/conveyor
LABEL org.opencontainers.image.title="conveyor-training" \
      org.opencontainers.image.description="Conveyor training entrypoint (CUDA torch) for the train step and Katib trials" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=build /opt/conveyor /opt/conveyor
RUN useradd --uid 10001 --create-home conveyor
USER 10001
ENV PATH=/opt/conveyor/bin:$PATH CONVEYOR_CODE_VERSION=${VERSION} PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /home/conveyor
# No ENTRYPOINT: KFP runners that pass the task's command as the container's CMD (kfp.local's
# DockerRunner) would otherwise run it as arguments of the entrypoint. Pods and Katib trials set
# `command` anyway.
ENTRYPOINT []
CMD ["python", "-m", "components.train.entrypoint", "--help"]
