# Shared settings of the one-node Kubernetes scripts (sourced, not run).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# The cluster is built from Debian's `kubernetes` source package; its version is known without
# any download from the binary package it also produces (kubernetes-client), and keys the cache.
k8s_debian_version() {
  apt-cache show --no-all-versions kubernetes-client 2>/dev/null | sed -n 's/^Version: //p' | head -1
}
K8S_DEBIAN_VERSION="${PFCON_K8S_DEBIAN_VERSION:-$(k8s_debian_version)}"
if [[ -z "$K8S_DEBIAN_VERSION" && $(id -u) -eq 0 ]]; then  # a machine whose apt lists were never fetched
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  K8S_DEBIAN_VERSION="$(k8s_debian_version)"
fi
if [[ -z "$K8S_DEBIAN_VERSION" ]]; then
  echo "apt knows no kubernetes-client package: cannot tell which Kubernetes source to build" >&2
  exit 1
fi
# 1.20.5+really1.20.2-1.1+deb12u1 -> 1.20.2 (what the tree really is)
K8S_UPSTREAM_VERSION="$(sed -E 's/-[^-]*$//; s/.*really//; s/^[0-9]+://' <<<"$K8S_DEBIAN_VERSION")"
K8S_DEBIAN_MIRROR="${PFCON_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
K8S_DEBIAN_SECURITY_MIRROR="${PFCON_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
K8S_CACHE="${PFCON_K8S_CACHE:-/var/cache/pfcon-k8s}/$K8S_DEBIAN_VERSION"
K8S_BIN="$K8S_CACHE/bin"

# Where the running cluster keeps its state (PKI, etcd, the node's containerd, logs, PIDs).
# The kubeconfig for pfcon and the tests is $K8S_STATE/kubeconfig (admin, cluster-admin).
# One cluster per machine (its ports are fixed): not under PFCON_STATE_DIR, which make.sh
# points at each instance's own folder.
K8S_STATE="${PFCON_K8S_STATE:-/var/lib/pfcon-dev/kubernetes}"
K8S_KUBECONFIG="$K8S_STATE/kubeconfig"
# Everything listens on loopback, on ports no other part of the project uses.
K8S_ETCD_PORT=23790
K8S_ETCD_PEER_PORT=23800
K8S_API_PORT=16443
K8S_CM_PORT=16257
K8S_SCHEDULER_PORT=16259
K8S_KUBELET_PORT=16250
# The pods' network: a bridge of our own with a private subnet. Pods reach the API server at
# the `kubernetes` Service's address, which a NAT rule of our own table sends to loopback.
K8S_BRIDGE=pfk8s0
K8S_POD_SUBNET=10.85.77.0/24
K8S_POD_GATEWAY=10.85.77.1
K8S_SERVICE_RANGE=10.0.0.0/24
K8S_API_SERVICE_IP=10.0.0.1
K8S_NFT_TABLE=pfcon_k8s
# The node's own containerd: the other tests' engines never see its containers or images.
K8S_CONTAINERD_SOCKET="$K8S_STATE/node/containerd.sock"
# Paths the kubelet and containerd hard-code; inside the node's mount namespace each is a
# folder of $K8S_STATE/node, so nothing of theirs lands on the host's.
K8S_NODE_BINDS=(/var/log /run/containerd /var/lib/kubelet /var/lib/cni)
# The sysctls kubelet sets at start; recorded before and restored when the cluster stops.
K8S_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

k8s_alive() {  # k8s_alive NAME — the process recorded as NAME runs
  local pid
  pid="$(cat "$K8S_STATE/pids/$1.pid" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

k8s_stop() {  # k8s_stop NAME — TERM, then KILL after 10 s, the process recorded as NAME
  local pidfile="$K8S_STATE/pids/$1.pid" pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 0
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    echo "stopping $1 ($pid) ..."
    kill "$pid"
    wait_until 10 "! kill -0 $pid" || { kill -9 "$pid" 2>/dev/null && wait_until 10 "! kill -0 $pid"; } || true
  fi
  rm -f "$pidfile"
}

k8s_kubectl() {
  "$K8S_BIN/kubectl" --kubeconfig "$K8S_KUBECONFIG" "$@"
}

k8s_ctr() {
  ctr --address "$K8S_CONTAINERD_SOCKET" --namespace k8s.io "$@"
}
