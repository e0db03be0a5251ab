#!/usr/bin/env bash
# The main job on an embedded default: two throwaway local PostgreSQL clusters, a
# sample database of about 100 MB (several schemas, foreign keys, triggers,
# sequences, TOASTed values, partitions) with an application writing to it the
# whole time, migrated by pgferry: preflight, copy, change capture, validation,
# cutover. Prints the summary, then removes both clusters.
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
writer=
cleanup() {
  [ -n "$writer" ] && kill "$writer" 2>/dev/null || true
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
max_slot_wal_keep_size = 1GB
CONF
  run "$BIN/pg_ctl" -D "$work/$c" -l "$work/$c.log" -w start >/dev/null
done
SRC="postgresql://postgres@127.0.0.1:55401/shopdb?sslmode=disable"
TGT="postgresql://postgres@127.0.0.1:55402/shopdb?sslmode=disable"
psql -X -q -h 127.0.0.1 -p 55401 -U postgres -d postgres -c "CREATE DATABASE shopdb"
psql -X -q -h 127.0.0.1 -p 55402 -U postgres -d postgres -c "CREATE DATABASE shopdb"
echo "== loading a sample database of about 100 MB on the source (PostgreSQL 15, port 55401)"
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 55401 -U postgres -d shopdb <<'SQL'
CREATE ROLE shop_app LOGIN PASSWORD 'shop-app-pw';
CREATE SCHEMA shop; CREATE SCHEMA audit;
CREATE TABLE shop.customers (id bigserial PRIMARY KEY, name text NOT NULL, since timestamptz DEFAULT now());
CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id bigint NOT NULL REFERENCES shop.customers,
                          total numeric(12,2), note text, at timestamptz DEFAULT now());
CREATE INDEX ON shop.orders (customer_id);
CREATE TABLE audit.events (id bigserial, at timestamptz NOT NULL DEFAULT now(), detail jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE audit.events_old PARTITION OF audit.events FOR VALUES FROM (MINVALUE) TO ('2026-01-01');
CREATE TABLE audit.events_new PARTITION OF audit.events FOR VALUES FROM ('2026-01-01') TO (MAXVALUE);
CREATE FUNCTION audit.log_order() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO audit.events (detail) VALUES (jsonb_build_object('order', NEW.id, 'total', NEW.total)); RETURN NEW; END$$;
CREATE TRIGGER orders_audit AFTER INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION audit.log_order();
INSERT INTO shop.customers (name) SELECT 'customer ' || g FROM generate_series(1, 50000) g;
INSERT INTO shop.orders (customer_id, total, note)
  SELECT 1 + g % 50000, (g % 1000) * 1.25, CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 200) ELSE 'order ' || g END
  FROM generate_series(1, 600000) g;
GRANT USAGE ON SCHEMA shop, audit TO shop_app;
GRANT ALL ON ALL TABLES IN SCHEMA shop, audit TO shop_app;
GRANT ALL ON ALL SEQUENCES IN SCHEMA shop, audit TO shop_app;
SQL
psql -X -q -h 127.0.0.1 -p 55402 -U postgres -d postgres -c "CREATE ROLE shop_app LOGIN PASSWORD 'shop-app-pw'"
psql -X -Atq -h 127.0.0.1 -p 55401 -U postgres -d shopdb -c "SELECT 'source size: ' || pg_size_pretty(pg_database_size('shopdb'))"

echo "== an application writes to the source for the whole demo (one order every few milliseconds)"
( while psql -X -q -h 127.0.0.1 -p 55401 -U shop_app -d shopdb \
      -c "INSERT INTO shop.orders (customer_id, total, note) SELECT 1 + (random() * 49999)::int, random() * 100, 'live' FROM generate_series(1, 20)" 2>/dev/null; do
    sleep 0.02; done ) &
writer=$!

echo "== pgferry check"
"$PGFERRY" check --source "$SRC" --target "$TGT" || true
echo "== pgferry copy"
"$PGFERRY" copy --source "$SRC" --target "$TGT"
echo "== pgferry follow --until-caught-up (change capture)"
"$PGFERRY" follow --source "$SRC" --target "$TGT" --until-caught-up
echo "== pgferry cutover (the application's writes fail from the fence on; its connection is cut)"
"$PGFERRY" cutover --source "$SRC" --target "$TGT" --switch-command "echo 'switch: point the application at 127.0.0.1:55402'"
echo "== pgferry validate (source fenced, target open: both hold the same rows)"
"$PGFERRY" validate --source "$SRC" --target "$TGT"
kill "$writer" 2>/dev/null || true; writer=
echo "== summary"
psql -X -Atq -h 127.0.0.1 -p 55402 -U postgres -d shopdb -c \
  "SELECT 'orders on the target: ' || count(*) || ', of which written live during the demo: ' || count(*) FILTER (WHERE note = 'live') FROM shop.orders"
