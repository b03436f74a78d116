#!/usr/bin/env bash
# OpenStack Swift "all in one" on loopback for the swift storage (Debian's swift packages):
# tempauth user chris:chris1234 with key "testing" at http://127.0.0.1:8080/auth/v1.0 (pfcon
# 5.3's development defaults). One device, one replica per ring, everything under
# $PFCON_STATE_DIR/swift except /etc/swift/swift.conf (the servers always read that one for the
# hash prefix/suffix). Installs only what is missing, starts only what does not answer, records
# the PID of every process it starts; safe to run again.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SWIFT_DIR="$PFCON_STATE_DIR/swift"
AUTH_URL="http://127.0.0.1:8080/auth/v1.0"
PROXY_PORT=8080 OBJECT_PORT=6200 CONTAINER_PORT=6201 ACCOUNT_PORT=6202 MEMCACHED_PORT=11211

auth_answers() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Auth-User: chris:chris1234' \
    -H 'X-Auth-Key: testing' "$AUTH_URL")" == 200 ]]
}
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The servers need the object, container and account servers behind the proxy; a working
# login plus three listening ports is "up".
if auth_answers && port_answers $OBJECT_PORT && port_answers $CONTAINER_PORT && port_answers $ACCOUNT_PORT; then
  echo "swift answers at $AUTH_URL"
  exit 0
fi

need_packages=()
for pair in swift-proxy-server:swift-proxy swift-object-server:swift-object \
  swift-container-server:swift-container swift-account-server:swift-account \
  swift-ring-builder:swift memcached:memcached curl:curl; do
  command -v "${pair%%:*}" >/dev/null || need_packages+=("${pair#*:}")
done
apt_install "${need_packages[@]}"
require_root "swift is not running"

mkdir -p "$SWIFT_DIR"/{conf,devices/d1,log,run}
if ! grep -qs swift_hash_path_suffix /etc/swift/swift.conf; then
  mkdir -p /etc/swift
  cat >/etc/swift/swift.conf <<'EOF'
[swift-hash]
swift_hash_path_prefix = pfcon-dev-prefix
swift_hash_path_suffix = pfcon-dev-suffix

[storage-policy:0]
name = Policy-0
default = yes
EOF
fi

common() {  # common PORT — the [DEFAULT] of every server
  cat <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $1
workers = 0
user = $(id -un)
swift_dir = $SWIFT_DIR/conf
devices = $SWIFT_DIR/devices
mount_check = false
disable_fallocate = true
fallocate_reserve = 0
log_level = INFO
EOF
}
for kind in object container account; do
  port_var="${kind^^}_PORT"
  { common "${!port_var}"; printf '\n[pipeline:main]\npipeline = %s-server\n\n[app:%s-server]\nuse = egg:swift#%s\n' "$kind" "$kind" "$kind"; } \
    >"$SWIFT_DIR/conf/$kind-server.conf"
done
{
  common $PROXY_PORT
  cat <<EOF

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth copy dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:tempauth]
use = egg:swift#tempauth
user_chris_chris1234 = testing .admin
storage_url_scheme = default

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:dlo]
use = egg:swift#dlo
EOF
} >"$SWIFT_DIR/conf/proxy-server.conf"

# One device, one replica: the smallest rings Swift accepts.
for kind in object container account; do
  port_var="${kind^^}_PORT"
  builder="$SWIFT_DIR/conf/$kind.builder"
  if [[ ! -s "$SWIFT_DIR/conf/$kind.ring.gz" ]]; then
    rm -f "$builder"
    swift-ring-builder "$builder" create 8 1 1 >/dev/null
    swift-ring-builder "$builder" add "r1z1-127.0.0.1:${!port_var}/d1" 100 >/dev/null
    swift-ring-builder "$builder" rebalance >/dev/null || true  # exit 1 = "balanced with warnings"
  fi
done

start() {  # start NAME PORT COMMAND... — unless something already listens on PORT
  local name=$1 port=$2
  shift 2
  port_answers "$port" && return 0
  echo "starting $name ..."
  # Debian's python with a clean environment: a venv or PYTHONPATH breaks the servers' imports.
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin EVENTLET_NO_GREENDNS=yes \
    setsid "$@" >"$SWIFT_DIR/log/$name.log" 2>&1 </dev/null &
  echo $! >"$PFCON_STATE_DIR/swift-$name.pid"
}
start memcached $MEMCACHED_PORT /usr/bin/memcached -u root -l 127.0.0.1 -p $MEMCACHED_PORT
for kind in object container account proxy; do
  port_var="${kind^^}_PORT"
  start "$kind-server" "${!port_var}" /usr/bin/python3 "/usr/bin/swift-$kind-server" \
    "$SWIFT_DIR/conf/$kind-server.conf" --verbose
done

wait_until 60 "$(declare -f auth_answers); AUTH_URL=$AUTH_URL auth_answers" || {
  echo "swift did not answer at $AUTH_URL; see $SWIFT_DIR/log/" >&2
  tail -n 20 "$SWIFT_DIR"/log/*.log >&2
  exit 1
}
echo "swift answers at $AUTH_URL (user chris:chris1234, key testing)"
