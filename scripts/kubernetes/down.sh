#!/usr/bin/env bash
# Stop exactly what up.sh started, by recorded PID, and undo what it changed on the host:
# the pods' containers, the node, the control plane, the bridge, the NAT table, the sysctls
# kubelet set and the empty cgroups and mount points left behind. Keeps the state (PKI, etcd
# data, imported images) so the next up.sh is quick; `down.sh purge` removes it too.
#   scripts/kubernetes/down.sh [node|purge]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
what="${1:-all}"

k8s_stop kubelet
if k8s_alive containerd; then  # the pods' containers go before their containerd
  for task in $(k8s_ctr tasks ls -q 2>/dev/null); do
    k8s_ctr tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
  done
  sleep 1
  for task in $(k8s_ctr tasks ls -q 2>/dev/null); do k8s_ctr tasks delete -f "$task" >/dev/null 2>&1 || true; done
fi
k8s_stop containerd
# each pod's containerd shim names our node's socket on its command line
for proc in /proc/[0-9]*; do
  { tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null | grep -q -- "-address $K8S_CONTAINERD_SOCKET " &&
    kill -9 "${proc#/proc/}" 2>/dev/null
done
true
[[ "$what" == node ]] && exit 0

for name in scheduler controller-manager apiserver etcd; do k8s_stop "$name"; done
nft delete table ip "$K8S_NFT_TABLE" 2>/dev/null || true
ip link delete "$K8S_BRIDGE" 2>/dev/null || true
if [[ -f "$K8S_STATE/sysctls.saved" ]]; then
  while IFS= read -r setting; do sysctl -qw "$setting"; done <"$K8S_STATE/sysctls.saved"
  rm "$K8S_STATE/sysctls.saved"
fi
# the containers' cgroups (containerd's k8s.io parent in each hierarchy), once empty
find /sys/fs/cgroup -depth -type d -path '*/k8s.io*' -exec rmdir {} + 2>/dev/null || true
# (/run/containerd stays while Docker's own containerd keeps its shims' sockets there)
if [[ -f "$K8S_STATE/made-mountpoints" ]]; then
  while IFS= read -r path; do rmdir "$path" 2>/dev/null || true; done <"$K8S_STATE/made-mountpoints"
  rm "$K8S_STATE/made-mountpoints"
fi
rm -rf "$K8S_STATE/node/ipam"  # addresses of pods that are gone
if [[ "$what" == purge ]]; then
  rm -rf "$K8S_STATE"
fi
echo "Kubernetes stopped"
