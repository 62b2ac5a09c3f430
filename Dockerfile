# syntax=docker/dockerfile:1
# SmartCash validation service, CPU image.
#   docker build -t smartcash:cpu .
#   docker run --rm -p 8000:8000 smartcash:cpu
# See docs/DEPLOY.md for volumes, env vars, compose and the CUDA variant (docker/Dockerfile.cuda).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build stage: the venv is built here so pip, its cache and the build backend stay out of the runtime image
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY docker/install.sh docker/install.sh
COPY smartcash_core smartcash_core
COPY service service
COPY smartcash_client smartcash_client
RUN TORCH_VERSION="${TORCH_VERSION}" TORCH_INDEX_URL="${TORCH_INDEX_URL}" \
    bash docker/install.sh /opt/venv /src

# ---- runtime stage
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="smartcash-validation" \
      org.opencontainers.image.description="Validation and metrics service for SmartCash YOLOv5 banknote detectors"

# A fixed, unprivileged uid so volume ownership is predictable on the host.
RUN groupadd --system --gid 10001 smartcash \
    && useradd --system --uid 10001 --gid smartcash --home-dir /home/smartcash --create-home smartcash \
    && mkdir -p /data /checkpoints /state \
    && chown smartcash:smartcash /data /checkpoints /state

COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/smartcash-healthcheck

# All configuration is SMARTCASH_* env vars (service/settings.py); these are the container defaults.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SMARTCASH_HOST=0.0.0.0 \
    SMARTCASH_PORT=8000 \
    SMARTCASH_DATA_ROOT=/data \
    SMARTCASH_CHECKPOINT_ROOT=/checkpoints \
    SMARTCASH_STATE_DIR=/state \
    SMARTCASH_PRELOAD=demo

USER 10001:10001
WORKDIR /home/smartcash
VOLUME ["/data", "/checkpoints", "/state"]
EXPOSE 8000

# Liveness over HTTP with the image's own Python (slim images have no curl). The start period covers
# preloading the model; failures during it do not count against the retries.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "/usr/local/bin/smartcash-healthcheck"]

ENTRYPOINT ["smartcash"]
CMD ["serve"]
