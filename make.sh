#!/usr/bin/env bash
# Start a development pfcon on this machine with embedded defaults:
#   out-of-network zip-file storage in ./storeBase, the local Docker Engine, development
#   credentials (pfcon / pfcon1234), served by gunicorn on 127.0.0.1:30005.
# Installs what it needs: a virtual environment in ./.venv and, on Debian as root, the
# engine from apt when it is missing; builds the example job image locally (no registry).
#
#   ./make.sh [-S STOREBASE] [-p PORT] [-b BIND_ADDRESS]
#   ./unmake.sh            # stops it (and removes the jobs it started)
set -euo pipefail
cd "$(dirname "$0")"
here="$(pwd)"
storebase="$here/storeBase"
port=30005
address=127.0.0.1
while getopts "S:p:b:h" opt; do
  case "$opt" in
    S) storebase="$(realpath -m "$OPTARG")" ;;
    p) port="$OPTARG" ;;
    b) address="$OPTARG" ;;
    *) sed -n '2,10p' "$0"; exit 0 ;;
  esac
done
run="$here/.run"
mkdir -p "$run" "$storebase"

if [[ -f "$run/pfcon.pid" ]] && kill -0 "$(cat "$run/pfcon.pid")" 2>/dev/null; then
  echo "pfcon is already running (pid $(cat "$run/pfcon.pid")); ./unmake.sh stops it"
  exit 0
fi

PFCON_STATE_DIR="$run" bash scripts/system-setup.sh

if [[ ! -x .venv/bin/pfcon ]]; then
  echo "creating the virtual environment in .venv ..."
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e .
fi

export APPLICATION_MODE=development
export STOREBASE="$storebase" STOREBASE_MOUNT="$storebase"
export PFCON_BIND="$address:$port"
export JOB_LABELS="org.chrisproject.pfcon.dev=$here"
setsid .venv/bin/pfcon serve >"$run/pfcon.log" 2>&1 < /dev/null &
echo $! >"$run/pfcon.pid"
echo "$storebase" >"$run/storebase"

url="http://$address:$port/api/v1/"
for _ in $(seq 1 100); do
  if curl -fsS "${url}health/" >/dev/null 2>&1; then
    cat <<EOT
pfcon is up at $url  (pid $(cat "$run/pfcon.pid"), log: $run/pfcon.log)
  storage:     zipfile, storeBase $storebase
  engine:      local Docker Engine
  credentials: pfcon / pfcon1234   (development mode)
  job image:   localhost/pfcon-busybox:1 (runs pl-copy)
Stop it with ./unmake.sh
EOT
    exit 0
  fi
  if ! kill -0 "$(cat "$run/pfcon.pid")" 2>/dev/null; then
    echo "pfcon failed to start:" >&2
    tail -20 "$run/pfcon.log" >&2
    rm -f "$run/pfcon.pid"
    exit 1
  fi
  sleep 0.2
done
echo "pfcon did not answer within 20 s; see $run/pfcon.log (./unmake.sh stops it)" >&2
exit 1
