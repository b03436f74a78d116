#!/usr/bin/env bash
# OpenStack Swift "all in one" on loopback for the swift and s3 storages (Debian's swift packages):
# tempauth user chris:chris1234 with key "testing" at http://127.0.0.1:8080/auth/v1.0 (pfcon
# 5.3's development defaults), and the same store through the S3 API (Swift's s3api middleware)
# at http://127.0.0.1:8080, access key chris:chris1234, secret key testing, region us-east-1.
# One device, one replica per ring, everything under $PFCON_STATE_DIR/swift except
# /etc/swift/swift.conf (the servers always read that one for the hash prefix/suffix).
# Installs only what is missing, starts only what does not answer, restarts the proxy only when
# its configuration changed (so a Swift started before s3api gets the new pipeline), records
# the PID of every process it starts; safe to run again.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

SWIFT_DIR="$PFCON_STATE_DIR/swift"
PROXY_CONF="$SWIFT_DIR/conf/proxy-server.conf"
AUTH_URL="http://127.0.0.1:8080/auth/v1.0"
S3_URL="http://127.0.0.1:8080"
PROXY_PORT=8080 OBJECT_PORT=6200 CONTAINER_PORT=6201 ACCOUNT_PORT=6202 MEMCACHED_PORT=11211

auth_answers() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Auth-User: chris:chris1234' \
    -H 'X-Auth-Key: testing' "$AUTH_URL")" == 200 ]]
}
# s3api answers a request signed by an unknown key with an S3 XML error; Swift alone does not.
s3_answers() {
  curl -s -H 'Authorization: AWS pfcon-probe:c2lnbmF0dXJl' "$S3_URL/pfcon-probe" | grep -q '<Code>'
}
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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

server_conf() {  # server_conf KIND — object, container or account
  local port_var="${1^^}_PORT"
  common "${!port_var}"
  printf '\n[pipeline:main]\npipeline = %s-server\n\n[app:%s-server]\nuse = egg:swift#%s\n' "$1" "$1" "$1"
}

# s3api sits before tempauth (it turns an S3 signature into a tempauth identity); S3 multipart
# uploads become static large objects, hence slo (and versioned_writes, which s3api requires).
proxy_conf() {
  common $PROXY_PORT
  cat <<EOF

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

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

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes
EOF
}
proxy_conf_current() { [[ -f "$PROXY_CONF" && "$(proxy_conf)" == "$(cat "$PROXY_CONF")" ]]; }

# The servers need the object, container and account servers behind the proxy; a working
# login, the S3 API and three listening ports is "up" — unless the proxy was configured from
# this state folder with an older configuration (a Swift started here by an older script).
if auth_answers && s3_answers && port_answers $OBJECT_PORT && port_answers $CONTAINER_PORT \
  && port_answers $ACCOUNT_PORT && { [[ ! -f "$PROXY_CONF" ]] || proxy_conf_current; }; then
  echo "swift answers at $AUTH_URL (S3 API at $S3_URL)"
  exit 0
fi

need_packages=()
for pair in swift-proxy-server:swift-proxy swift-object-server:swift-object \
  swift-container-server:swift-container swift-account-server:swift-account \
  swift-ring-builder:swift memcached:memcached curl:curl; do
  command -v "${pair%%:*}" >/dev/null || need_packages+=("${pair#*:}")
done
/usr/bin/python3 -c 'import lxml' 2>/dev/null || need_packages+=(python3-lxml)  # s3api's XML
apt_install "${need_packages[@]}"
require_root "swift is not running or not configured as this script configures it"

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
for kind in object container account; do
  server_conf "$kind" >"$SWIFT_DIR/conf/$kind-server.conf"
done
proxy_changed=false
if ! proxy_conf_current; then
  proxy_conf >"$PROXY_CONF"
  proxy_changed=true
fi

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

# A proxy already running with an older configuration is stopped here and started again below
# (a second or two without Swift). Only the PID recorded when it was started is signalled.
if $proxy_changed && port_answers $PROXY_PORT; then
  pid=$(cat "$PFCON_STATE_DIR/swift-proxy-server.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]] && grep -qs swift-proxy-server "/proc/$pid/cmdline"; then
    echo "restarting swift-proxy-server (pid $pid) for its new configuration ..."
    kill "$pid"
    wait_until 30 "! (exec 3<>/dev/tcp/127.0.0.1/$PROXY_PORT)" || {
      echo "swift-proxy-server (pid $pid) did not stop" >&2
      exit 1
    }
  else
    echo "a proxy answers on port $PROXY_PORT but was not started here (no PID recorded);" \
      "restart it to load $PROXY_CONF" >&2
    exit 1
  fi
fi

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

wait_until 60 "$(declare -f auth_answers s3_answers); AUTH_URL=$AUTH_URL S3_URL=$S3_URL; auth_answers && s3_answers" || {
  echo "swift did not answer at $AUTH_URL and $S3_URL; see $SWIFT_DIR/log/" >&2
  tail -n 20 "$SWIFT_DIR"/log/*.log >&2
  exit 1
}
echo "swift answers at $AUTH_URL (user chris:chris1234, key testing) and S3 at $S3_URL"
