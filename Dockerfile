# syntax=docker/dockerfile:1.7
# ptc — progressive traffic controller. Two stages:
#   builder: builds ptc's wheel (pip wheel --no-deps, as the tests do) and wheels of its
#            dependencies; anything that needs compiling is compiled here.
#   final:   installs those wheels offline into a slim Python; no compiler, no build tools,
#            non-root UID 65532, runs with a read-only root filesystem (writes only to /tmp).
# The image is the controller and its CLI: no extras (no matplotlib: `ptc report` runs where
# `pip install 'ptc[report]'` was done), and .dockerignore leaves the sandbox and demo out.
# Build: docker build -t ptc:0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the build needs (see .dockerignore): the project metadata, its README (the package's
# long description) and the package.
COPY pyproject.toml README.md ./
COPY controller/ ./controller/
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels /wheels/ptc-*.whl

FROM python:3.11.14-slim-bookworm
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ptc" \
      org.opencontainers.image.description="Progressive traffic controller for Kubernetes: staged replica-ratio rollouts with Prometheus analysis and automatic rollback" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/ptc-dev/ptc" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"
# No .pyc writes at run time (the root filesystem is read-only; pip compiled them at install),
# unbuffered logs, and a HOME that is writable (/tmp is the pod's emptyDir).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The wheels come from the builder through a bind mount, so they do not stay in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels ptc \
 && ptc --version
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["ptc"]
CMD ["run", "--config", "/etc/ptc/config.yaml"]
