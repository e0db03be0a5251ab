#!/usr/bin/env bash
# Change-capture drain benchmark: a backlog is built with no consumer attached (a
# pgbench tpcb-like run of DURATION seconds), recorded in two slots that hold the
# same starting point (pgferry's, made by its copy, and a native one made right
# after it, with no write in between); then each consumer drains it, one after the
# other: `pgferry follow --until-caught-up` and a native subscription on its slot.
# Prints both times and the ratio. REPEAT runs, medians.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
SCALE=${SCALE:-10}
DURATION=${DURATION:-30}
D=drain
OUT=$BENCH_DIR/drain-results.tsv
clusters_up
: > "$OUT"
for run in $(seq "$REPEAT"); do
  psql_s -d "$D" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null 2>&1 || true
  psql_s -d postgres -c "DROP DATABASE IF EXISTS $D WITH (FORCE)" -c "CREATE DATABASE $D" >/dev/null
  for db in ${D}_pgferry ${D}_native; do psql_t -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null; done
  "$PGBIN/pgbench" -q -i -s "$SCALE" "${S[@]}" "$D" >/dev/null 2>&1
  "$PGFERRY" copy --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_pgferry)" >/dev/null 2>&1
  "$PGBIN/pg_dump" "${S[@]}" "$D" | psql_t -d ${D}_native >/dev/null
  psql_s -d "$D" -c "CREATE PUBLICATION native_pub FOR ALL TABLES" -c "SELECT pg_create_logical_replication_slot('native_slot', 'pgoutput')" >/dev/null
  "$PGBIN/pgbench" -n -c 4 -j 2 -T "$DURATION" "${S[@]}" "$D" >/dev/null 2>&1
  end_lsn=$(psql_s -d "$D" -Atc "SELECT pg_current_wal_lsn()")
  backlog=$(psql_s -d "$D" -Atc "SELECT pg_size_pretty(pg_wal_lsn_diff('$end_lsn', restart_lsn)) FROM pg_replication_slots WHERE slot_name = 'native_slot'")
  start=$(now); "$PGFERRY" follow --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_pgferry)" --until-caught-up >/dev/null 2>&1; end=$(now)
  ours=$(echo "$end - $start" | bc)
  start=$(now)
  psql_t -d ${D}_native -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=$SOCK port=$SRC_PORT dbname=$D user=postgres' PUBLICATION native_pub WITH (create_slot = false, slot_name = 'native_slot', copy_data = false)" >/dev/null
  until [ "$(psql_s -d "$D" -Atc "SELECT confirmed_flush_lsn >= '$end_lsn' FROM pg_replication_slots WHERE slot_name = 'native_slot'")" = t ]; do sleep 0.05; done
  end=$(now)
  native=$(echo "$end - $start" | bc)
  same=$([ "$(psql_t -d ${D}_pgferry -Atc "SELECT sum(abalance), count(*) FROM pgbench_accounts")" = "$(psql_t -d ${D}_native -Atc "SELECT sum(abalance), count(*) FROM pgbench_accounts")" ] && echo same || echo DIFFERENT)
  psql_t -d ${D}_native -c "ALTER SUBSCRIPTION native_sub DISABLE" -c "ALTER SUBSCRIPTION native_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION native_sub" >/dev/null
  printf '%s\tbacklog=%s\tpgferry=%s\tnative=%s\ttargets=%s\n' "$run" "$backlog" "$ours" "$native" "$same" | tee -a "$OUT"
done
p=$(awk -F'\t' '{sub("pgferry=", "", $3); print $3}' "$OUT" | median)
n=$(awk -F'\t' '{sub("native=", "", $4); print $4}' "$OUT" | median)
echo "median drain: pgferry ${p}s, native subscription ${n}s; native / pgferry = $(echo "scale=2; $n / $p" | bc)"
