#!/usr/bin/env bash
# Install and start what pfcon's tests and dev instance need on this machine, idempotently:
# Docker Engine (Debian's docker.io), busybox-static for the job image, curl. Starts dockerd
# only when no engine answers, and records the PID of what it started.
#   scripts/system-setup.sh            # engine + test image
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
state="${PFCON_STATE_DIR:-/var/lib/pfcon-dev}"
mkdir -p "$state"

need_packages=()
command -v dockerd >/dev/null || need_packages+=(docker.io)
command -v curl >/dev/null || need_packages+=(curl)
static_busybox() { [[ -x /bin/busybox ]] && [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic"* ]]; }
static_busybox || need_packages+=(busybox-static)
if ((${#need_packages[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages: ${need_packages[*]} (install them as root)" >&2
    exit 1
  fi
  echo "installing ${need_packages[*]} ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "no Docker engine answers and only root can start one here" >&2
    exit 1
  fi
  echo "starting dockerd ..."
  setsid dockerd >"$state/dockerd.log" 2>&1 < /dev/null &
  echo $! >"$state/dockerd.pid"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $state/dockerd.log" >&2; exit 1; }
fi

bash "$here/scripts/build-test-image.sh" docker
