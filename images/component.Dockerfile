# The component image (CPU): every KFP component of the data stage runs in it. It carries this
# package and kfp, so components use `install_kfp_package=False` and import the project directly.
# Build from the repository root:
#   docker build -f images/component.Dockerfile -t ghcr.io/conveyor-mlops/conveyor-component:0.1.0 .
# (The tag must match components/images.py; `make images` builds all three images.)

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1
RUN pip install uv==0.13.9
WORKDIR /src
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
# CPU torch from the PyTorch CPU index: the default index would pull the CUDA build.
RUN uv venv /opt/conveyor && \
    uv pip install --python /opt/conveyor/bin/python \
      --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 && \
    uv pip install --python /opt/conveyor/bin/python .

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/conveyor-mlops/conveyor
LABEL org.opencontainers.image.title="conveyor-component" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=build /opt/conveyor /opt/conveyor
RUN useradd --uid 10001 --create-home conveyor
USER 10001
ENV PATH=/opt/conveyor/bin:$PATH CONVEYOR_CODE_VERSION=${VERSION} PYTHONUNBUFFERED=1
WORKDIR /home/conveyor
ENTRYPOINT []
