#!/usr/bin/env bash
# Change-capture drain benchmark: a backlog is built with no consumer attached (a
# pgbench tpcb-like run of DURATION seconds), recorded in two slots that hold the
# same starting point (pgferry's, made by its copy, and a native one made right
# after it, with no write in between); then each consumer drains it, one after the
# other: `pgferry follow --until-caught-up` and a native subscription on its slot.
# Prints both times and the ratio. REPEAT runs, medians.
# LANES=N (N > 1) adds a second pgferry migration (its own copy and slot, made
# before the native one, still with no write in between) drained with
# `--apply-lanes N`; the three consumers then drain in an order rotated by run.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
SCALE=${SCALE:-10}
DURATION=${DURATION:-30}
LANES=${LANES:-1}
D=drain
OUT=$BENCH_DIR/drain-results.tsv
clusters_up
: > "$OUT"
for run in $(seq "$REPEAT"); do
  psql_s -d "$D" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null 2>&1 || true
  psql_s -d postgres -c "DROP DATABASE IF EXISTS $D WITH (FORCE)" -c "CREATE DATABASE $D" >/dev/null
  for db in ${D}_pgferry ${D}_lanes ${D}_native; do psql_t -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null; done
  "$PGBIN/pgbench" -q -i -s "$SCALE" "${S[@]}" "$D" >/dev/null 2>&1
  "$PGFERRY" copy --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_pgferry)" >/dev/null 2>&1
  [ "$LANES" -gt 1 ] && "$PGFERRY" copy --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_lanes)" --name lanes >/dev/null 2>&1
  "$PGBIN/pg_dump" "${S[@]}" "$D" | psql_t -d ${D}_native >/dev/null
  psql_s -d "$D" -c "CREATE PUBLICATION native_pub FOR ALL TABLES" -c "SELECT pg_create_logical_replication_slot('native_slot', 'pgoutput')" >/dev/null
  "$PGBIN/pgbench" -n -c 4 -j 2 -T "$DURATION" "${S[@]}" "$D" >/dev/null 2>&1
  end_lsn=$(psql_s -d "$D" -Atc "SELECT pg_current_wal_lsn()")
  backlog=$(psql_s -d "$D" -Atc "SELECT pg_size_pretty(pg_wal_lsn_diff('$end_lsn', restart_lsn)) FROM pg_replication_slots WHERE slot_name = 'native_slot'")
  consumers=(pgferry native)
  [ "$LANES" -gt 1 ] && consumers=(pgferry lanes native)
  order=""
  for i in $(seq 0 $((${#consumers[@]} - 1))); do
    consumer=${consumers[$(((i + run - 1) % ${#consumers[@]}))]}
    order+="$consumer "
    start=$(now)
    case $consumer in
      pgferry) "$PGFERRY" follow --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_pgferry)" --until-caught-up >/dev/null 2>&1 ;;
      lanes) "$PGFERRY" follow --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_lanes)" --name lanes --apply-lanes "$LANES" --until-caught-up >/dev/null 2>&1 ;;
      native)
        psql_t -d ${D}_native -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=$SOCK port=$SRC_PORT dbname=$D user=postgres' PUBLICATION native_pub WITH (create_slot = false, slot_name = 'native_slot', copy_data = false)" >/dev/null
        until [ "$(psql_s -d "$D" -Atc "SELECT confirmed_flush_lsn >= '$end_lsn' FROM pg_replication_slots WHERE slot_name = 'native_slot'")" = t ]; do sleep 0.05; done ;;
    esac
    end=$(now)
    printf -v "took_$consumer" '%s' "$(echo "$end - $start" | bc)"
  done
  ours=$took_pgferry native=$took_native
  sums() { psql_t -d "$1" -Atc "SELECT sum(abalance), count(*) FROM pgbench_accounts"; }
  same=$([ "$(sums ${D}_pgferry)" = "$(sums ${D}_native)" ] && echo same || echo DIFFERENT)
  lanes=""
  if [ "$LANES" -gt 1 ]; then
    lanes="lanes$LANES=$took_lanes"
    [ "$(sums ${D}_lanes)" = "$(sums ${D}_native)" ] || same=DIFFERENT
  fi
  psql_t -d ${D}_native -c "ALTER SUBSCRIPTION native_sub DISABLE" -c "ALTER SUBSCRIPTION native_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION native_sub" >/dev/null
  printf '%s\tbacklog=%s\tpgferry=%s\tnative=%s\ttargets=%s\t%s\torder=%s\n' "$run" "$backlog" "$ours" "$native" "$same" "$lanes" "$order" | tee -a "$OUT"
done
p=$(awk -F'\t' '{sub("pgferry=", "", $3); print $3}' "$OUT" | median)
n=$(awk -F'\t' '{sub("native=", "", $4); print $4}' "$OUT" | median)
echo "median drain: pgferry ${p}s, native subscription ${n}s; native / pgferry = $(echo "scale=2; $n / $p" | bc)"
if [ "$LANES" -gt 1 ]; then
  l=$(awk -F'\t' '{sub("lanes[0-9]*=", "", $6); print $6}' "$OUT" | median)
  echo "median drain with --apply-lanes $LANES: ${l}s; native / lanes = $(echo "scale=2; $n / $l" | bc), 1 lane / $LANES lanes = $(echo "scale=2; $p / $l" | bc)"
fi
