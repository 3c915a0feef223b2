# syntax=docker/dockerfile:1
# The certmint operator image, as the Helm chart (charts/certmint) runs it, for those who
# build with Docker:
#
#   docker build -t ghcr.io/certmint/certmint:0.1.0 .
#   docker run --rm ghcr.io/certmint/certmint:0.1.0 operator --help
#
# `make image` builds the same image without Docker (hack/image/build.py: Debian packages
# with mmdebstrap, reproducible to the digest); this file describes it step for step, and
# tests/unit/test_dockerfile.py keeps the two in step: Debian bookworm's Python 3.11 with
# ca-certificates, netbase and tzdata; certmint[operator] installed from
# requirements-operator.lock (hashes checked) into the venv /opt/certmint, with no pip or
# setuptools left in it; bytecode compiled with unchecked hashes (the root filesystem is
# read-only at run time); the unprivileged user 65532; `certmint` (the [project.scripts]
# console script) as entrypoint. The chart passes `operator` and its flags as arguments.
ARG DEBIAN_IMAGE=debian:12.15-slim

FROM ${DEBIAN_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The builder's own pip and setuptools: the pinned ones of hack/image/build.lock.
COPY hack/image/build.lock ./
RUN python3 -m venv /build && /build/bin/pip install --require-hashes --no-deps -r build.lock
COPY requirements-operator.lock pyproject.toml README.md ./
COPY operator/ operator/
RUN /build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
    && python3 -m venv --without-pip /opt/certmint \
    && /build/bin/pip --python /opt/certmint/bin/python install --no-compile --no-deps --require-hashes \
       -r requirements-operator.lock \
    && /build/bin/pip --python /opt/certmint/bin/python install --no-compile --no-deps /dist/*.whl \
    && find /opt/certmint/lib/python3.11/site-packages -mindepth 2 -maxdepth 2 -type d \
       \( -name tests -o -name test \) -exec rm -rf {} + \
    && /opt/certmint/bin/python -m compileall -q -q --invalidation-mode unchecked-hash \
       -x /site-packages/kubernetes/aio/ /opt/certmint/lib/python3.11/site-packages

FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 ca-certificates netbase tzdata \
    && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/* \
    && groupadd --gid 65532 certmint \
    && useradd --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin certmint
COPY --from=builder /opt/certmint /opt/certmint
ENV PATH=/opt/certmint/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 9402
ENTRYPOINT ["certmint"]
CMD ["operator"]
