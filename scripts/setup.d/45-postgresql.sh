#!/usr/bin/env bash
# PostgreSQL (Debian's `postgresql`) on loopback for the job store's tests and the two-replica
# test: the distribution's default cluster, listening on 127.0.0.1:5432 only, a role
# pfcon/pfcon (allowed to create databases: each test gets one of its own) and a database
# pfcon_test. Installs only what is missing, starts the cluster only when it does not answer,
# and records the PID of the postmaster it started; safe to run again.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

PG_HOST=127.0.0.1 PG_PORT=5432 PG_ROLE=pfcon PG_PASSWORD=pfcon PG_DATABASE=pfcon_test

command -v pg_ctlcluster >/dev/null || apt_install postgresql
version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
[[ -n "$version" ]] || { echo "no PostgreSQL server under /usr/lib/postgresql" >&2; exit 1; }

cluster_answers() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
if ! cluster_answers; then
  require_root "PostgreSQL does not answer at $PG_HOST:$PG_PORT"
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$version" main >/dev/null
  fi
  conf_dir="/etc/postgresql/$version/main"
  # loopback only, whatever the cluster was created with
  sed -i "s/^#\?listen_addresses = .*/listen_addresses = '$PG_HOST'/" "$conf_dir/postgresql.conf"
  sed -i "s/^#\?port = .*/port = $PG_PORT/" "$conf_dir/postgresql.conf"
  echo "starting PostgreSQL $version (cluster main) on $PG_HOST:$PG_PORT ..."
  pg_ctlcluster "$version" main start
  wait_until 60 "pg_isready -q -h $PG_HOST -p $PG_PORT" || {
    echo "PostgreSQL did not answer; see /var/log/postgresql/postgresql-$version-main.log" >&2
    exit 1
  }
  head -n 1 "/var/lib/postgresql/$version/main/postmaster.pid" >"$PFCON_STATE_DIR/postgresql.pid"
fi

psql_admin() { (cd / && runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"); }
if [[ -z "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" ]]; then
  psql_admin -c "CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
fi
if [[ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" ]]; then
  psql_admin -c "CREATE DATABASE $PG_DATABASE OWNER $PG_ROLE"
fi
echo "postgresql answers at $PG_HOST:$PG_PORT (postgresql+psycopg://$PG_ROLE:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_DATABASE)"
