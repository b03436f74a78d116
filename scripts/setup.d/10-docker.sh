#!/usr/bin/env bash
# Docker Engine (Debian's docker.io), busybox-static for the job image, curl; starts dockerd
# only when no engine answers and records the PID of what it started; builds the test image.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

need_packages=()
command -v dockerd >/dev/null || need_packages+=(docker.io)
command -v curl >/dev/null || need_packages+=(curl)
command -v ip >/dev/null || need_packages+=(iproute2)  # the fault tests give their dockerd its own bridge
static_busybox() { [[ -x /bin/busybox ]] && [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic"* ]]; }
static_busybox || need_packages+=(busybox-static)
apt_install "${need_packages[@]}"

if ! docker info >/dev/null 2>&1; then
  require_root "no Docker engine answers"
  echo "starting dockerd ..."
  setsid dockerd >"$PFCON_STATE_DIR/dockerd.log" 2>&1 < /dev/null &
  echo $! >"$PFCON_STATE_DIR/dockerd.pid"
  wait_until 30 "docker info" || { echo "dockerd did not start; see $PFCON_STATE_DIR/dockerd.log" >&2; exit 1; }
fi

bash "$PFCON_ROOT/scripts/build-test-image.sh" docker
