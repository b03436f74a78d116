#!/usr/bin/env bash
# Install and start every system part pfcon's tests and dev instance need, idempotently.
# Each part has its own script under scripts/setup.d/, run in name order; each installs only
# what is missing, starts only what does not answer, and records the PID of what it started.
#   scripts/system-setup.sh           # every part
#   scripts/system-setup.sh docker    # only the parts whose name contains "docker"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for part in "$here"/setup.d/*.sh; do
  [[ -z "${1:-}" || "$(basename "$part")" == *"$1"* ]] || continue
  bash "$part"
done
