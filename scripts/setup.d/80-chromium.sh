#!/usr/bin/env bash
# Headless Chromium from Debian for the dashboard's browser tests (driven by Playwright for
# Python with executable_path pointing here: Playwright never downloads a browser of its own).
# Installs only what is missing; starts nothing (each test launches its own browser). Safe to
# run again. Prints the executable the tests use (PFCON_CHROMIUM, default /usr/bin/chromium).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

CHROMIUM="${PFCON_CHROMIUM:-/usr/bin/chromium}"
need_packages=()
[[ -x "$CHROMIUM" ]] || need_packages+=(chromium)
# the fonts a page's text is drawn with in screenshots
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need_packages+=(fonts-dejavu-core)
apt_install "${need_packages[@]}"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --version 2>/dev/null || "$CHROMIUM" --version
echo "chromium for the dashboard tests: $CHROMIUM"
