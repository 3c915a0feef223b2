# syntax=docker/dockerfile:1
# The certmint operator image, as the Helm chart (charts/certmint) runs it:
#
#   docker build -t ghcr.io/certmint/certmint:0.1.0 .
#   docker run --rm ghcr.io/certmint/certmint:0.1.0 operator --help
#
# The builder stage builds the wheel from pyproject.toml; the final stage installs only
# that wheel and its dependencies (no build tools, no sources, no tests) and runs as the
# unprivileged user 65532, with `certmint` (the [project.scripts] console script) as
# entrypoint. The chart passes `operator` and its flags as arguments.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install "build>=1.2"
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m build --wheel --outdir /dist .

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The wheel is bind-mounted from the builder, so it leaves no layer behind; pip compiles
# the bytecode at install time (the root filesystem is read-only at run time).
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python -m pip install /dist/*.whl \
    && groupadd --gid 65532 certmint \
    && useradd --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin certmint
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 9402
ENTRYPOINT ["certmint"]
CMD ["operator"]
