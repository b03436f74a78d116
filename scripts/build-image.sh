#!/usr/bin/env bash
# Build pfcon's image from the Dockerfile on the local debian:bookworm-slim (made by
# scripts/setup.d/60-base-image.sh when missing), with no registry and no index reached from
# inside the build: the dependencies' wheels are fetched on the host into wheels/
# (again only when pyproject.toml's dependencies change). Docker's layer cache does the rest,
# so a rebuild after a code change takes seconds.
#   scripts/build-image.sh [TAG]        # default localhost/pfcon:dev
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-localhost/pfcon:dev}"
cd "$here"

bash scripts/setup.d/60-base-image.sh >/dev/null

python="${PFCON_PYTHON:-$here/.venv/bin/python}"
[[ -x "$python" ]] || python=python3
wheels="$here/wheels"
requirements="$("$python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')"
key="$(printf '%s\nsetuptools>=68\n' "$requirements" | sha256sum | cut -c1-16)"
if [[ "$(cat "$wheels/.key" 2>/dev/null)" != "$key" ]]; then
  echo "fetching the dependencies' wheels into $wheels ..."
  rm -f "$wheels"/*.whl
  # the image runs Debian 12's Python 3.11; every dependency ships a pure-Python wheel
  "$python" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --dest "$wheels" "setuptools>=68" $requirements 2> >(grep -v "is ignored" >&2)
  echo "$key" >"$wheels/.key"
fi

revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
version="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
# The legacy builder (DOCKER_BUILDKIT=0) uses a base image present locally and never pulls it.
# Docker CLI 28 falls back to it anyway when the buildx plugin is missing (as here, with a
# deprecation warning), but DOCKER_BUILDKIT=1 without buildx is an error, and BuildKit would
# try to resolve debian:bookworm-slim from a registry: so say it explicitly.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
DOCKER_BUILDKIT=0 docker build -q \
  --build-arg PIP_INSTALL_OPTIONS=--no-index \
  --build-arg PFCON_VERSION="$version" \
  --build-arg PFCON_REVISION="$revision" \
  -t "$tag" . >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
echo "built $tag ($(docker image inspect --format '{{ .Size }}' "$tag" | numfmt --to=iec))"
