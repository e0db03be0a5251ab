#!/usr/bin/env bash
# The main job on an embedded default: two throwaway local clusters, and pgferry
# run against them. Until the migration lifecycle lands this runs the preflight
# (`pgferry check`) on a sample source and an empty target, then removes both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --locked -q -p pgferry-cli
PGFERRY=$PWD/target/release/pgferry
BIN=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/pgferry-demo-XXXXXX)
chmod 755 "$work"
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$work"
cleanup() {
  for c in source target; do run "$BIN/pg_ctl" -D "$work/$c" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
port=55400
for c in source target; do
  port=$((port + 1))
  run "$BIN/initdb" -D "$work/$c" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  cat >> "$work/$c/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
wal_level = logical
CONF
  run "$BIN/pg_ctl" -D "$work/$c" -l "$work/$c.log" -w start >/dev/null
done
psql -X -q -h 127.0.0.1 -p 55401 -U postgres -d postgres <<'SQL'
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id bigserial PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES shop.customers, total numeric(12,2));
INSERT INTO shop.customers (name) SELECT 'customer ' || g FROM generate_series(1, 1000) g;
INSERT INTO shop.orders (customer_id, total) SELECT 1 + g % 1000, g * 1.5 FROM generate_series(1, 10000) g;
CREATE TABLE shop.audit_log (at timestamptz DEFAULT now(), message text);
SQL
echo "== pgferry check on a sample source (PostgreSQL 15, port 55401) and an empty target (port 55402)"
set +e
"$PGFERRY" check --source "postgresql://postgres@127.0.0.1:55401/postgres?sslmode=disable" \
                 --target "postgresql://postgres@127.0.0.1:55402/postgres?sslmode=disable"
code=$?
set -e
echo "== pgferry check exited with $code (shop.audit_log has no primary key: the preflight names it and its fix)"
