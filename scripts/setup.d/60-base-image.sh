#!/usr/bin/env bash
# The base image of pfcon's Dockerfile, debian:bookworm-slim, made locally with debootstrap
# (no registry is reachable here). Left alone when that tag already exists and is either
# the real one (no label of ours) or ours from the same recipe (label = hash of this file);
# so reruns take a second. docker-compose (Debian's) comes along to check the compose files.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

image="${PFCON_BASE_IMAGE:-debian:bookworm-slim}"
mirror="${PFCON_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
recipe="$(sha256sum "$PFCON_ROOT/scripts/setup.d/60-base-image.sh" | cut -c1-16)"

need_packages=()
command -v debootstrap >/dev/null || need_packages+=(debootstrap)
command -v docker-compose >/dev/null || need_packages+=(docker-compose)
apt_install "${need_packages[@]}"

if docker image inspect "$image" >/dev/null 2>&1; then
  current="$(docker image inspect --format '{{ index .Config.Labels "org.chrisproject.pfcon.base" }}' "$image")"
  if [[ -z "$current" || "$current" == "<no value>" || "$current" == "$recipe" ]]; then
    echo "base image $image is present"
    exit 0
  fi
fi

require_root "the base image $image is missing and debootstrap needs root"
root="$(mktemp -d /var/tmp/pfcon-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "building $image with debootstrap (about a minute) ..."
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$PFCON_STATE_DIR/debootstrap.log" 2>&1 ||
  { echo "debootstrap failed; see $PFCON_STATE_DIR/debootstrap.log" >&2; exit 1; }

# What makes the official image "slim": no docs, man pages or locales from later installs,
# no apt caches kept. Images built on it then stay small too.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Install-Recommends "false";
Acquire::Languages "none";
CFG
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
# keep apt's partial/ folders (owned by _apt): without them later downloads fail oddly
rm -rf "$root"/usr/share/{man,info,locale}/* "$root"/var/log/* "$root"/tmp/*
rm -f "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
find "$root/var/lib/apt/lists" -maxdepth 1 -type f -delete

tar --numeric-owner -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' \
  --change "LABEL org.chrisproject.pfcon.base=$recipe" \
  - "$image" >/dev/null
echo "base image $image built ($recipe, $(docker image inspect --format '{{ .Size }}' "$image" | numfmt --to=iec))"
