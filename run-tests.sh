#!/usr/bin/env bash
# The whole test suite: system parts (idempotent), the virtual environment, lint, pytest.
#   ./run-tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/system-setup.sh
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check pfcon tests bench
.venv/bin/ruff format --check pfcon tests bench
exec .venv/bin/python -m pytest "$@"
