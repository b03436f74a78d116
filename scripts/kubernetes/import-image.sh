#!/usr/bin/env bash
# Put an image into the test node's containerd without a registry, idempotently:
#   k8s.gcr.io/pause:3.2  the pod sandbox, built by build.sh from the tree's pause.c
#   anything else         an image of the shared dockerd (a local build), via `docker save`
# Pods that leave imagePullPolicy unset use a present image with a non-"latest" tag and never
# pull. An image is imported again when its local build changed (its ID is recorded).
#   scripts/kubernetes/import-image.sh IMAGE
set -euo pipefail
source "$(dirname "$0")/lib.sh"
image="$1"
mkdir -p "$K8S_STATE/images"
record="$K8S_STATE/images/$(tr -c 'a-zA-Z0-9.-' _ <<<"$image")"

if [[ "$image" == k8s.gcr.io/pause:* ]]; then
  source_id="$(sha256sum <"$K8S_BIN/pause" | cut -c1-64)"
else
  source_id="$(docker image inspect --format '{{.Id}}' "$image")"
fi
if [[ "$(cat "$record" 2>/dev/null)" == "$source_id" ]] && [[ -n "$(k8s_ctr images ls -q "name~=${image%%:*}")" ]]; then
  exit 0
fi

if [[ "$image" == k8s.gcr.io/pause:* ]]; then
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  mkdir "$root/rootfs" && cp "$K8S_BIN/pause" "$root/rootfs/pause"
  # a one-layer image via the shared dockerd's import, saved in the archive format ctr reads
  tar -C "$root/rootfs" -c . | docker import --change 'ENTRYPOINT ["/pause"]' - "$image" >/dev/null
  docker save "$image" | k8s_ctr images import - >/dev/null
  docker image rm "$image" >/dev/null
else
  docker save "$image" | k8s_ctr images import - >/dev/null
fi
echo "$source_id" >"$record"
echo "imported $image into the Kubernetes node"
