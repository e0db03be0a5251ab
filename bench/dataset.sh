#!/usr/bin/env bash
# Builds the benchmark dataset on the source: pgbench tables at SCALE (50 is about
# 1 GB) plus wide TOASTed, foreign-keyed, partitioned and keyless tables.
source "$(dirname "$0")/common.sh"
SCALE=${SCALE:-50}
clusters_up
psql_s -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
"$PGBIN/pgbench" -q -i -s "$SCALE" "${S[@]}" "$DB" >/dev/null 2>&1
psql_s -d "$DB" <<SQL
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE customers (id bigserial PRIMARY KEY, uid uuid UNIQUE DEFAULT gen_random_uuid(), name text, tags text[], balance numeric(14,2), since timestamptz);
INSERT INTO customers (name, tags, balance, since)
SELECT 'customer ' || g, ARRAY['t' || g % 10], g * 1.25, now() - g * interval '1 minute' FROM generate_series(1, $SCALE * 2000) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers, status order_status, items int[], total numeric(12,2), at timestamptz);
INSERT INTO orders (customer_id, status, items, total, at)
SELECT 1 + g % ($SCALE * 2000), (ARRAY['new','paid','shipped'])[1 + g % 3]::order_status, ARRAY[g % 7, g % 11], g % 1000, now() FROM generate_series(1, $SCALE * 10000) g;
CREATE INDEX ON orders (customer_id);
CREATE TABLE documents (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers, body text, blob bytea, meta jsonb);
INSERT INTO documents (customer_id, body, blob, meta)
SELECT 1 + g % ($SCALE * 2000), repeat(md5(g::text), 128), decode(string_agg(md5(g::text || i::text), ''), 'hex'), jsonb_build_object('g', g)
FROM generate_series(1, $SCALE * 150) g, generate_series(1, 64) i GROUP BY g;
CREATE INDEX ON documents USING gin (meta jsonb_path_ops);
CREATE TABLE events (id bigint, at timestamptz NOT NULL, payload jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024h1 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE events_2024h2 PARTITION OF events FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
CREATE TABLE events_rest PARTITION OF events DEFAULT;
INSERT INTO events SELECT g, '2024-01-01'::timestamptz + (g % 500) * interval '1 day', jsonb_build_object('g', g) FROM generate_series(1, $SCALE * 5000) g;
VACUUM ANALYZE;
SQL
psql_s -d "$DB" -Atc "SELECT 'database ' || pg_size_pretty(pg_database_size(current_database())) || ', tables ' || pg_size_pretty(sum(pg_table_size(oid))) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
