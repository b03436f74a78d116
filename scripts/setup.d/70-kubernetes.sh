#!/usr/bin/env bash
# A real one-node Kubernetes (Debian's 1.20 source, built once per machine into
# /var/cache/pfcon-k8s/<debian-version>/; about 7 min cold) on loopback: etcd, the API server,
# controller-manager, scheduler and a kubelet node with a private containerd, started only when
# not running. The last line printed is KUBECONFIG=<path> (/var/lib/pfcon-dev/kubernetes/kubeconfig).
# See docs/kubernetes.md.
#   scripts/setup.d/70-kubernetes.sh         # build when needed, start, import the test image
#   scripts/setup.d/70-kubernetes.sh stop    # stop what it started, restore the host's sysctls
set -euo pipefail
here="$(cd "$(dirname "$0")/../kubernetes" && pwd)"
if [[ "${1:-}" == stop ]]; then
  exec bash "$here/down.sh"
fi
bash "$here/build.sh"
exec bash "$here/up.sh"
