#!/usr/bin/env bash
# Start the one-node Kubernetes (built by build.sh) on loopback, idempotently: etcd, the API
# server, controller-manager, scheduler, and a node (a private containerd and the kubelet in a
# mount namespace of their own). Only what does not run yet is started; each PID is recorded
# under $K8S_STATE/pids for down.sh. Imports the test image, then prints KUBECONFIG=<path>.
#   scripts/kubernetes/up.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

require_root "the one-node Kubernetes is not running (its node needs root)"
[[ -f "$K8S_BIN/.complete" ]] || { echo "Kubernetes is not built: run scripts/kubernetes/build.sh" >&2; exit 1; }
mkdir -p "$K8S_STATE"/{pki,pids,logs,etcd,node/cni,node/ipam}
for path in "${K8S_NODE_BINDS[@]}"; do mkdir -p "$K8S_STATE/node/binds$path"; done
pki="$K8S_STATE/pki"

start() {  # start NAME COMMAND... — in the background, logged, its PID recorded, unless it runs
  local name="$1"
  shift
  k8s_alive "$name" && return 0
  echo "starting $name ..."
  setsid "$@" >>"$K8S_STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$K8S_STATE/pids/$name.pid"
}

must() {  # must SECONDS NAME CHECK — wait for CHECK, or show NAME's log and fail
  wait_until "$1" "$3" && return 0
  echo "$2 did not come up; the end of $K8S_STATE/logs/$2.log:" >&2
  tail -n 20 "$K8S_STATE/logs/$2.log" >&2
  exit 1
}

# -- PKI, tokens and kubeconfigs (made once) -------------------------------------------------
make_pki() {
  [[ -f "$pki/.complete" ]] && return 0
  echo "making the cluster's CA, certificates and tokens ..."
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=pfcon-k8s-ca \
      -keyout ca.key -out ca.crt 2>/dev/null
    sign() {  # sign NAME SUBJECT [SAN]
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      local ext=()
      if [[ -n "${3:-}" ]]; then
        printf 'subjectAltName=%s\n' "$3" >"$1.ext"
        ext=(-extfile "$1.ext")
      fi
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        "${ext[@]}" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    sign apiserver /CN=kube-apiserver \
      "IP:127.0.0.1,IP:$K8S_API_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    # for clients whose Authorization header is not theirs to use (a request through the
    # API server's service proxy carries pfcon's own bearer token)
    sign admin-client "/O=system:masters/CN=admin-client"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    token() { openssl rand -hex 16; }
    {
      echo "$(token),admin,admin-uid,system:masters"
      echo "$(token),system:kube-controller-manager,kcm-uid"
      echo "$(token),system:kube-scheduler,scheduler-uid"
      echo "$(token),system:node:localhost,node-uid,system:nodes"
    } >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
  local names=(admin controller-manager scheduler kubelet) index token user
  for index in "${!names[@]}"; do  # one kubeconfig per line of tokens.csv, in that order
    IFS=, read -r token user _ < <(sed -n "$((index + 1))p" "$pki/tokens.csv")
    cat >"$K8S_STATE/${names[index]}.kubeconfig" <<CONF
apiVersion: v1
kind: Config
clusters:
  - name: pfcon-k8s
    cluster:
      server: https://127.0.0.1:$K8S_API_PORT
      certificate-authority: $pki/ca.crt
users:
  - name: $user
    user:
      token: $token
contexts:
  - name: pfcon-k8s
    context: {cluster: pfcon-k8s, user: $user}
current-context: pfcon-k8s
CONF
    chmod 600 "$K8S_STATE/${names[index]}.kubeconfig"
  done
  ln -sfn admin.kubeconfig "$K8S_KUBECONFIG"
  touch "$pki/.complete"
}
make_pki

# -- control plane --------------------------------------------------------------------------
start etcd "$K8S_BIN/etcd" --name pfcon-k8s --data-dir "$K8S_STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --initial-cluster "pfcon-k8s=http://127.0.0.1:$K8S_ETCD_PEER_PORT"
must 30 etcd "curl -fs http://127.0.0.1:$K8S_ETCD_PORT/health"

gates=TTLAfterFinished=true  # JOB_TTL_SECONDS: ttlSecondsAfterFinished is dropped without it
apiserver=("$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$K8S_ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$K8S_API_PORT" --insecure-port 0 \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" --authorization-mode Node,RBAC \
  --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
  --kubelet-preferred-address-types Hostname \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
  --service-account-signing-key-file "$pki/sa.key" --service-cluster-ip-range "$K8S_SERVICE_RANGE" \
  --allow-privileged=true --endpoint-reconciler-type none --cert-dir "$K8S_STATE/apiserver-certs" \
  --enable-admission-plugins NamespaceLifecycle,ServiceAccount,LimitRanger,ResourceQuota,DefaultStorageClass \
  --feature-gates "$gates")
start apiserver "${apiserver[@]}"
admin_token="$(sed -n 1p "$pki/tokens.csv" | cut -d, -f1)"
api_ready="curl -fs --cacert $pki/ca.crt -H 'Authorization: Bearer $admin_token' https://127.0.0.1:$K8S_API_PORT/readyz"
must 60 apiserver "$api_ready"

# A watch from a long-gone resource version must get 410 Gone, as on any cluster that has run
# a while: the status feed's tests of an expired watch rely on it. An API server started on a
# fresh etcd keeps every event since revision 1 in its watch caches until they fill up, and
# replays them; restarted once, its caches begin at the revision etcd has reached.
refuses_revision_1() {
  local reply
  reply="$(curl -s --max-time 5 --cacert "$pki/ca.crt" -H "Authorization: Bearer $admin_token" \
    "https://127.0.0.1:$K8S_API_PORT/api/v1/pods?watch=1&resourceVersion=1&timeoutSeconds=1" || true)"
  [[ "$reply" == *'"code":410'* ]]
}
if ! refuses_revision_1; then
  echo "restarting apiserver: its watch caches reach back to revision 1 (a fresh etcd) ..."
  k8s_stop apiserver  # open watches can hold it up past the TERM
  start apiserver "${apiserver[@]}"
  must 60 apiserver "$api_ready"
  refuses_revision_1 || echo "warning: the API server still replays watches from revision 1" >&2
fi

# nodeipam is off: the node's pod network comes from our CNI configuration, not from the cluster.
start controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$K8S_STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$K8S_CM_PORT" --port 0 --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials=true --controllers '*,-nodeipam' --cert-dir "$K8S_STATE/cm-certs" \
  --flex-volume-plugin-dir "$K8S_STATE/flexvolume" --feature-gates "$gates"
start scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$K8S_STATE/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$K8S_SCHEDULER_PORT" --port 0 --leader-elect=false \
  --cert-dir "$K8S_STATE/scheduler-certs"

# -- the node's network: a bridge, and the `kubernetes` Service's address led to loopback ----
if ! ip link show "$K8S_BRIDGE" >/dev/null 2>&1; then
  ip link add "$K8S_BRIDGE" type bridge
  ip addr add "$K8S_POD_GATEWAY/${K8S_POD_SUBNET#*/}" dev "$K8S_BRIDGE"
  ip link set "$K8S_BRIDGE" up
fi
sysctl -qw "net.ipv4.conf.$K8S_BRIDGE.route_localnet=1"  # this bridge only: may DNAT to 127.0.0.1
if ! nft list table ip "$K8S_NFT_TABLE" >/dev/null 2>&1; then
  nft -f - <<NFT
table ip $K8S_NFT_TABLE {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "$K8S_BRIDGE" ip daddr $K8S_API_SERVICE_IP tcp dport 443 dnat to 127.0.0.1:$K8S_API_PORT
  }
}
NFT
fi
cat >"$K8S_STATE/node/cni/10-pfcon-k8s.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "pfcon-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$K8S_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$K8S_POD_SUBNET", "gateway": "$K8S_POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$K8S_STATE/node/ipam"
      }
    }
  ]
}
CNI

# -- the node: containerd and kubelet in a mount namespace of their own ----------------------
install -m 755 "$here/runc-wrapper" "$K8S_STATE/node/runc-wrapper"  # outlives the checkout
cat >"$K8S_STATE/node/containerd.toml" <<TOML
version = 2
root = "$K8S_STATE/node/containerd/root"
state = "$K8S_STATE/node/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$K8S_CONTAINERD_SOCKET"
[ttrpc]
  address = "$K8S_CONTAINERD_SOCKET.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$K8S_STATE/node/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$K8S_STATE/node/runc-wrapper"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$K8S_STATE/node/cni"
TOML

if ! k8s_alive kubelet && [[ ! -f "$K8S_STATE/sysctls.saved" ]]; then
  for name in "${K8S_SYSCTLS[@]}"; do echo "$name=$(sysctl -n "$name")"; done >"$K8S_STATE/sysctls.saved"
fi
# The mount points of the node's private binds (left on the host, empty; down.sh removes the
# ones it made).
for path in "${K8S_NODE_BINDS[@]}"; do
  [[ -d "$path" ]] || { mkdir -p "$path" && echo "$path" >>"$K8S_STATE/made-mountpoints"; }
done
if ! k8s_alive kubelet || ! k8s_alive containerd; then
  [[ -f "$K8S_STATE/pids/kubelet.pid" ]] && bash "$here/down.sh" node  # a half-dead node: restart it whole
  start kubelet unshare --mount --propagation private bash "$here/node.sh"
fi
must 60 containerd "kill -0 \$(cat $K8S_STATE/pids/containerd.pid) && ctr --address $K8S_CONTAINERD_SOCKET version"

# -- images (no registry): the sandbox image and the test image, from local builds -----------
bash "$here/import-image.sh" k8s.gcr.io/pause:3.2
bash "$here/import-image.sh" "${PFCON_TEST_IMAGE:-localhost/pfcon-busybox:1}"

must 90 kubelet "'$K8S_BIN/kubectl' --kubeconfig '$K8S_KUBECONFIG' get node localhost -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True && ! '$K8S_BIN/kubectl' --kubeconfig '$K8S_KUBECONFIG' get node localhost -o jsonpath='{.spec.taints}' | grep -q not-ready"
# Pods in "default" wait for its service account, made by the controller-manager.
must 30 controller-manager "'$K8S_BIN/kubectl' --kubeconfig '$K8S_KUBECONFIG' -n default get serviceaccount default"
echo "Kubernetes $K8S_UPSTREAM_VERSION runs (one node, ${SECONDS}s; state and logs: $K8S_STATE)"
echo "KUBECONFIG=$K8S_KUBECONFIG"
