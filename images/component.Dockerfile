# The component image (CPU): every KFP component of the data stage runs in it. It carries this
# package and kfp, so components use `install_kfp_package=False` and import the project directly.
# Build from the repository root:
#   docker build -f images/component.Dockerfile -t ghcr.io/conveyor-mlops/conveyor-component:0.1.0 .
# (The tag must match components/images.py; `make images` builds all three images.)

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
# CPU torch from the PyTorch CPU index: the default index would pull the CUDA build. TORCH_INDEX=""
# takes torch from uv's configured sources instead (a local wheel folder: `make images` here).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN uv venv /opt/conveyor && \
    uv pip install --python /opt/conveyor/bin/python \
      ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch==2.13.0 && \
    uv pip install --python /opt/conveyor/bin/python -r pyproject.toml --extra spark
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
LABEL org.opencontainers.image.title="conveyor-component" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"
# Java for the Spark ingest engine (engine=spark: a SparkApplication's driver and executors run
# this image; images/spark-entrypoint.sh starts them the way Spark on Kubernetes asks).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless procps && \
    rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/conveyor /opt/conveyor
COPY images/spark-entrypoint.sh /opt/conveyor/bin/spark-entrypoint
RUN useradd --uid 10001 --create-home conveyor
USER 10001
ENV PATH=/opt/conveyor/bin:$PATH CONVEYOR_CODE_VERSION=${VERSION} PYTHONUNBUFFERED=1 \
    SPARK_HOME=/opt/conveyor/lib/python3.11/site-packages/pyspark PYSPARK_PYTHON=/opt/conveyor/bin/python
WORKDIR /home/conveyor
ENTRYPOINT ["/opt/conveyor/bin/spark-entrypoint"]
