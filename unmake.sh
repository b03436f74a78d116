#!/usr/bin/env bash
# Stop the development pfcon started by ./make.sh and remove the job containers it started.
# Job data in the storeBase is kept unless -D is given (it deletes the storeBase make.sh used).
#   ./unmake.sh [-D]
set -euo pipefail
cd "$(dirname "$0")"
here="$(pwd)"
run="$here/.run"
delete_data=no
while getopts "Dh" opt; do
  case "$opt" in
    D) delete_data=yes ;;
    *) sed -n '2,4p' "$0"; exit 0 ;;
  esac
done

if [[ -f "$run/pfcon.pid" ]]; then
  pid="$(cat "$run/pfcon.pid")"
  # only signal the process make.sh started (the PID may have been reused since)
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "pfcon"; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "pfcon (pid $pid) stopped"
  fi
  rm -f "$run/pfcon.pid"
else
  echo "no pfcon started by ./make.sh is running"
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  ids="$(docker ps -aq --filter "label=org.chrisproject.pfcon.dev=$here")"
  if [[ -n "$ids" ]]; then
    docker rm -f $ids >/dev/null
    echo "removed $(wc -w <<<"$ids") job container(s)"
  fi
fi
storebase="$(cat "$run/storebase" 2>/dev/null || echo "$here/storeBase")"
if [[ "$delete_data" == yes && -d "$storebase" ]]; then
  rm -rf "$storebase"
  rm -f "$run/storebase"
  echo "removed $storebase"
fi
