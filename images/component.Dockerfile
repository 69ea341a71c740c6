# The component image (CPU): every KFP component of the data stage runs in it. It carries this
# package and kfp, so components use `install_kfp_package=False` and import the project directly.
# Build from the repository root:
#   docker build -f images/component.Dockerfile -t ghcr.io/conveyor-mlops/conveyor-component:0.1.0 .
# (The tag must match components/cluster/images.py; `make images` builds all three images.)

# BASE_IMAGE: any Debian-based image with python3.11 and pip on PATH (`make images` on a machine with
# no registry builds one from Debian packages: images/build.py, images/base.Dockerfile).
ARG BASE_IMAGE=python:3.11-slim
# CPU torch from the PyTorch CPU index: the default index would pull the CUDA build. TORCH_INDEX=""
# takes torch from uv's configured sources instead (a local wheel folder: `make images` here).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
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
# Java and the 'spark' extra for the Spark ingest engine (engine=spark: a SparkApplication's driver
# and executors run this image; images/spark-entrypoint.sh starts them the way Spark on Kubernetes asks).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless procps && \
    rm -rf /var/lib/apt/lists/*
RUN pip install --target /tmp/uv uv==0.13.9 && \
    /tmp/uv/bin/uv pip install --python /opt/conveyor/bin/python -r pyproject.toml --extra spark && \
    rm -rf /tmp/uv
# The code is a layer of its own above the pinned dependencies: a change to it rebuilds in seconds.
COPY README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install --target /tmp/uv uv==0.13.9 && \
    /tmp/uv/bin/uv pip install --python /opt/conveyor/bin/python --no-deps . && \
    rm -rf /tmp/uv /src/build /src/*.egg-info
COPY images/spark-entrypoint.sh /opt/conveyor/bin/spark-entrypoint
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/conveyor-mlops/conveyor
LABEL org.opencontainers.image.title="conveyor-component" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"
USER 10001
ENV PATH=/opt/conveyor/bin:$PATH CONVEYOR_CODE_VERSION=${VERSION} \
    SPARK_HOME=/opt/conveyor/lib/python3.11/site-packages/pyspark PYSPARK_PYTHON=/opt/conveyor/bin/python
WORKDIR /home/conveyor
ENTRYPOINT ["/opt/conveyor/bin/spark-entrypoint"]
