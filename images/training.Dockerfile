# The training / trial image (CUDA): the `train` step and every Katib trial run the training
# entrypoint in it on GPU nodes. PyTorch's CUDA wheels bundle the CUDA runtime libraries, so the
# base needs no CUDA toolkit; the node's NVIDIA driver comes in through the container toolkit.
# Build from the repository root (`make images`):
#   docker build -f images/training.Dockerfile -t ghcr.io/conveyor-mlops/conveyor-training:0.1.0 .

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1
RUN pip install uv==0.13.9
WORKDIR /src
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
# torch==2.13.0 from PyPI is the CUDA build (with its nvidia-* runtime wheels); the rest is pinned
# by pyproject.toml.
RUN uv venv /opt/conveyor && \
    uv pip install --python /opt/conveyor/bin/python torch==2.13.0 && \
    uv pip install --python /opt/conveyor/bin/python .

FROM python:3.11-slim
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
ENTRYPOINT ["python", "-m", "components.train.entrypoint"]
