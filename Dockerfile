# pfcon's image: Debian's Python, pfcon in a virtual environment, served by gunicorn on 5005.
#   DOCKER_BUILDKIT=0 docker build -t localhost/pfcon .      (scripts/build-image.sh does this)
# Two stages: the builder has pip and the venv tooling; the final stage gets only the finished
# venv on top of python3, so no compilers, pip caches or build tools ship.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/pfcon
# Dependencies first, from pyproject.toml alone: a code change reuses this layer. Wheels put
# in wheels/ are used first; scripts/build-image.sh fills it on the host and passes
# PIP_INSTALL_OPTIONS=--no-index, so the build needs no index (as in CI here). Left empty,
# pip fetches from PyPI as usual.
ARG PIP_INSTALL_OPTIONS=""
COPY pyproject.toml /src/
COPY wheels/ /wheels/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' >/src/requirements.txt \
 && /opt/pfcon/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_INSTALL_OPTIONS \
      --find-links /wheels "setuptools>=68" -r /src/requirements.txt
COPY README.md /src/
COPY pfcon /src/pfcon
RUN /opt/pfcon/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation /src \
 && /opt/pfcon/bin/pip uninstall -y -q setuptools pip \
 && rm -rf /opt/pfcon/bin/activate* /opt/pfcon/bin/Activate.ps1 \
 && rm -rf /opt/pfcon/lib/python3*/site-packages/kubernetes/aio \
 && find /opt/pfcon/lib/python3*/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d ! -name s3 \
      -exec rm -rf {} + \
 && find /opt/pfcon/lib/python3*/site-packages/swagger_ui/static -type f ! -name LICENSE \
      ! -name swagger-ui-bundle.js ! -name swagger-ui.css ! -name favicon-32x32.png -delete
# kubernetes/aio is the client's asyncio twin (68 MB, half the image); pfcon uses the
# synchronous client only, and nothing in the package imports the twin. botocore carries the
# API models of some 450 AWS services (27 MB); pfcon's S3 storage loads only s3's. swagger_ui
# also ships Swagger Editor (23 MB); the reference page (/api/v1/docs/) serves three files.

FROM ${BASE_IMAGE}
# python3 only (its standard library); no pip, no venv module, no compilers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 1001 pfcon \
 && useradd --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pfcon \
 && mkdir -p /var/local/storeBase \
 && chown 1001:1001 /var/local/storeBase
COPY --from=builder /opt/pfcon /opt/pfcon
ENV PATH=/opt/pfcon/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STOREBASE_MOUNT=/var/local/storeBase \
    PFCON_BIND=0.0.0.0:5005 \
    CONTAINER_USER=1001:1001
# CONTAINER_USER: jobs run as pfcon's own uid, so pfcon (not root) can delete what they write;
# a job as root would leave folders pfcon cannot remove. Override it only together with USER.
USER 1001:1001
WORKDIR /opt/pfcon
EXPOSE 5005
ARG PFCON_VERSION=dev
ARG PFCON_REVISION=unknown
LABEL org.opencontainers.image.title="pfcon" \
      org.opencontainers.image.description="Compute controller for ChRIS: runs jobs as containers, wire-compatible with FNNDSC pfcon 5.3" \
      org.opencontainers.image.version="${PFCON_VERSION}" \
      org.opencontainers.image.revision="${PFCON_REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
# No curl in a slim image: ask the health endpoint with Python's own urllib. 503 (engine or
# storage not answering) makes urlopen raise, so the container reads unhealthy. It asks the
# port of a TCP PFCON_BIND; with a unix: socket, give the container a health check of its own.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('PFCON_BIND', ':5005').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/api/v1/health/', timeout=4)"]
# `pfcon serve` validates the settings, then execs gunicorn with pfcon.gunicorn_config
# (gthread workers, access log, the settings checked before workers fork).
CMD ["pfcon", "serve"]
