#!/usr/bin/env bash
# kubectl of the cluster's own version (1.20, built with it), on the cluster's admin kubeconfig.
#   scripts/kubernetes/kubectl.sh get pods -A
set -euo pipefail
source "$(dirname "$0")/lib.sh"
exec "$K8S_BIN/kubectl" --kubeconfig "$K8S_KUBECONFIG" "$@"
