#!/usr/bin/env bash
# Build the small job image used by the examples and tests, from Debian's busybox-static,
# and import it into an engine (no registry is needed). Idempotent: a label holds the hash
# of what went in, and a matching image is left alone.
#   scripts/build-test-image.sh [docker|podman]
set -euo pipefail
engine="${1:-docker}"
image="${PFCON_TEST_IMAGE:-localhost/pfcon-busybox:1}"
here="$(cd "$(dirname "$0")/.." && pwd)"
busybox=/bin/busybox  # from Debian's busybox-static; the image has no libc, so it must be static
if [[ ! -x "$busybox" ]] || [[ "$(LC_ALL=C ldd "$busybox" 2>&1 || true)" != *"not a dynamic"* ]]; then
  echo "a static /bin/busybox is needed (apt-get install busybox-static)" >&2
  exit 1
fi

hash="$(cat "$busybox" "$here/images/busybox/pl-copy" "$0" | sha256sum | cut -c1-16)"
current="$("$engine" image inspect --format '{{ index .Config.Labels "org.chrisproject.pfcon.build" }}' "$image" 2>/dev/null || true)"
if [[ "$current" == "$hash" ]]; then
  echo "$engine image $image is up to date"
  exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/local/bin,tmp,etc,share} && chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
cp "$here/images/busybox/pl-copy" "$root/usr/local/bin/pl-copy"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar -C "$root" -c . | "$engine" import \
  --change 'ENV PATH=/usr/local/bin:/bin' \
  --change 'CMD ["/bin/sh"]' \
  --change "LABEL org.chrisproject.pfcon.build=$hash" \
  - "$image" >/dev/null
echo "$engine image $image built ($hash)"
