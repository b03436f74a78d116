#!/usr/bin/env bash
# Stop the development pfcon started by ./make.sh (gunicorn or its container) and remove the
# job containers it started. Job data in the storeBase is kept unless -D is given (it deletes
# the storeBase make.sh used).
#   ./unmake.sh [-h] [-D] [-O ENGINE] [-N] [-F STORAGE] [-S STOREBASE] [-s] [-i] [-C]
# make.sh's flags are accepted so the same line works for both (./unmake.sh -N -F fslink);
# what is stopped is what make.sh recorded, whatever they say.
set -euo pipefail
cd "$(dirname "$0")"
here="$(pwd)"
run="${PFCON_RUN_DIR:-$here/.run}"

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }
delete_data=no
while getopts ":DO:NF:S:p:b:Csih" opt; do
  case "$opt" in
    D) delete_data=yes ;;
    O | N | F | S | p | b | C | s | i) ;;
    h) usage; exit 0 ;;
    :) echo "unmake.sh: -$OPTARG needs a value" >&2; usage >&2; exit 2 ;;
    *) echo "unmake.sh: unknown option -$OPTARG" >&2; usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(($# == 0)) || { echo "unmake.sh: unexpected argument: $1" >&2; usage >&2; exit 2; }

stopped=no
if [[ -f "$run/pfcon.pid" ]]; then
  pid="$(cat "$run/pfcon.pid")"
  # only signal the process make.sh started (the PID may have been reused since)
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "pfcon"; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "pfcon (pid $pid) stopped"
    stopped=yes
  fi
  rm -f "$run/pfcon.pid"
fi
if [[ -f "$run/pfcon.container" ]]; then
  name="$(cat "$run/pfcon.container")"
  if docker rm -f "$name" >/dev/null 2>&1; then
    echo "pfcon container $name removed"
    stopped=yes
  fi
  rm -f "$run/pfcon.container"
fi
[[ "$stopped" == yes ]] || echo "no pfcon started by ./make.sh is running"

for engine in docker podman; do
  command -v "$engine" >/dev/null && "$engine" info >/dev/null 2>&1 || continue
  ids="$("$engine" ps -aq --filter "label=org.chrisproject.pfcon.dev=$run")"
  if [[ -n "$ids" ]]; then
    "$engine" rm -f $ids >/dev/null
    echo "removed $(wc -w <<<"$ids") $engine job container(s)"
  fi
done
storebase="$(cat "$run/storebase" 2>/dev/null || echo "$here/storeBase")"
if [[ "$delete_data" == yes && -d "$storebase" ]]; then
  rm -rf "$storebase"
  rm -f "$run/storebase"
  echo "removed $storebase"
fi
