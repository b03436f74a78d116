#!/usr/bin/env bash
# Podman (Debian's podman 4) with its Docker-compatible API socket, and the test image in
# Podman's own image store. As root here runc refuses Podman's default rlimits, so a
# containers.conf sets ones it accepts. Starts the API service only when the socket does not
# answer, and records the PID of what it started.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
socket="${PFCON_PODMAN_SOCKET:-/run/podman/podman.sock}"

command -v podman >/dev/null || apt_install podman
command -v curl >/dev/null || apt_install curl

conf=/etc/containers/containers.conf
if ! grep -qs '^default_ulimits' "$conf"; then
  require_root "Podman needs $conf with rlimits runc accepts"
  mkdir -p "$(dirname "$conf")"
  if grep -qs '^\[containers\]' "$conf"; then
    sed -i '/^\[containers\]/a default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]' "$conf"
  else
    printf '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n' >>"$conf"
  fi
fi

podman_answers() { curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; }
if ! podman_answers; then
  require_root "the Podman API socket $socket does not answer"
  echo "starting the Podman API service on $socket ..."
  mkdir -p "$(dirname "$socket")"
  setsid podman system service --time=0 "unix://$socket" >"$PFCON_STATE_DIR/podman.log" 2>&1 </dev/null &
  echo $! >"$PFCON_STATE_DIR/podman.pid"
  wait_until 30 "curl -sf --unix-socket $socket http://d/_ping" ||
    { echo "the Podman API did not start; see $PFCON_STATE_DIR/podman.log" >&2; exit 1; }
fi

static_busybox() { [[ -x /bin/busybox ]] && [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic"* ]]; }
static_busybox || apt_install busybox-static
bash "$PFCON_ROOT/scripts/build-test-image.sh" podman
