#!/usr/bin/env bash
# The node, run by up.sh inside `unshare --mount --propagation private`: the paths kubelet and
# containerd hard-code are bound to folders of the cluster's state, then containerd starts in
# the background (its PID recorded) and this process becomes the kubelet.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

for path in "${K8S_NODE_BINDS[@]}"; do
  mount --bind "$K8S_STATE/node/binds$path" "$path"
done
containerd --config "$K8S_STATE/node/containerd.toml" >>"$K8S_STATE/logs/containerd.log" 2>&1 </dev/null &
echo $! >"$K8S_STATE/pids/containerd.pid"
wait_until 30 "test -S '$K8S_CONTAINERD_SOCKET'" || { echo "containerd did not start" >&2; exit 1; }

# No swap check, no QoS cgroup tree, no iptables chains of kubelet's own, no image garbage
# collection or evictions (the test images cannot be pulled back), everything on loopback.
export AWS_EC2_METADATA_DISABLED=true
exec "$K8S_BIN/kubelet" --kubeconfig "$K8S_STATE/kubelet.kubeconfig" --hostname-override localhost \
  --container-runtime remote --container-runtime-endpoint "unix://$K8S_CONTAINERD_SOCKET" \
  --root-dir /var/lib/kubelet --cert-dir "$K8S_STATE/kubelet-certs" \
  --volume-plugin-dir "$K8S_STATE/flexvolume" --fail-swap-on=false --cgroups-per-qos=false \
  --enforce-node-allocatable= --cgroup-driver cgroupfs --make-iptables-util-chains=false \
  --address 127.0.0.1 --port "$K8S_KUBELET_PORT" --read-only-port 0 --healthz-port 0 \
  --anonymous-auth=false --client-ca-file "$K8S_STATE/pki/ca.crt" --authorization-mode AlwaysAllow \
  --image-gc-high-threshold 100 --image-gc-low-threshold 99 --eviction-hard= \
  --pod-infra-container-image k8s.gcr.io/pause:3.2
