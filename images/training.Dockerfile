# The training / trial image (CUDA): the `train` step and every Katib trial run the training
# entrypoint in it on GPU nodes. PyTorch's CUDA wheels bundle the CUDA runtime libraries, so the
# base needs no CUDA toolkit; the node's NVIDIA driver comes in through the container toolkit.
# Build from the repository root (`make images`):
#   docker build -f images/training.Dockerfile -t ghcr.io/conveyor-mlops/conveyor-training:0.1.0 .

# BASE_IMAGE: any Debian-based image with python3.11 and pip on PATH (`make images` on a machine with
# no registry builds one from Debian packages: images/build.py, images/base.Dockerfile).
ARG BASE_IMAGE=python:3.11-slim
# torch==2.13.0 from PyPI is the CUDA build (with its nvidia-* runtime wheels); the rest is pinned
# by pyproject.toml. TORCH_INDEX names another index (e.g. a CUDA-version index); empty = PyPI (or
# uv's configured sources: `make images` on a machine without a GPU builds it with CPU torch).
ARG TORCH_INDEX=
FROM ${BASE_IMAGE}
# ---- shared with the other two Dockerfiles, instruction for instruction (tests/integration/test_images.py): with
# the same base and build arguments (`make images` here) the engine's layer cache builds the
# dependency layers once for all three images instead of three 2.4 GB copies. Single stage: a build
# stage plus its COPY into the final stage held the same venv three times on disk while an image
# was committed (CI ran out of space).
# UV_COMPILE_BYTECODE: uv writes no .pyc by default, and a container compiles what it imports on every
# start (torch and kserve: seconds per process, per pod) unless they were compiled here.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 UV_COMPILE_BYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --uid 10001 --create-home conveyor
WORKDIR /src
COPY pyproject.toml ./
ARG TORCH_INDEX
# uv lives in /tmp/uv for one step and leaves no trace in the layer. torch (0.8 GB here, several GB
# as the CUDA build) and the rest (1.6 GB) are two layers: a commit holds its layer about three
# times on disk at once, and a change to the pins leaves the torch layer cached.
RUN pip install --target /tmp/uv uv==0.13.9 && \
    /tmp/uv/bin/uv venv /opt/conveyor && \
    /tmp/uv/bin/uv pip install --python /opt/conveyor/bin/python \
      ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.13.0 && \
    rm -rf /tmp/uv
RUN pip install --target /tmp/uv uv==0.13.9 && \
    /tmp/uv/bin/uv pip install --python /opt/conveyor/bin/python -r pyproject.toml && \
    rm -rf /tmp/uv
# ---- end of the shared part
# The code is a layer of its own above the pinned dependencies: a change to it rebuilds in seconds.
COPY README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install --target /tmp/uv uv==0.13.9 && \
    /tmp/uv/bin/uv pip install --python /opt/conveyor/bin/python --no-deps . && \
    rm -rf /tmp/uv /src/build /src/*.egg-info
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/conveyor-mlops/conveyor
LABEL org.opencontainers.image.title="conveyor-training" \
      org.opencontainers.image.description="Conveyor training entrypoint (CUDA torch) for the train step and Katib trials" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"
USER 10001
ENV PATH=/opt/conveyor/bin:$PATH CONVEYOR_CODE_VERSION=${VERSION} \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /home/conveyor
# No ENTRYPOINT: KFP runners that pass the task's command as the container's CMD (kfp.local's
# DockerRunner) would otherwise run it as arguments of the entrypoint. Pods and Katib trials set
# `command` anyway.
ENTRYPOINT []
CMD ["python", "-m", "components.stages.train.entrypoint", "--help"]
