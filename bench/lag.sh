#!/usr/bin/env bash
# Change-capture lag under a steady load: the source's maximum pgbench (tpcb-like)
# rate is measured first with no consumer attached; then `pgferry follow` runs while
# pgbench writes at half that rate (--rate) for DURATION seconds. A heartbeat row is
# updated on the source every 50 ms (its own transaction, in the same stream as the
# load: a counter and the source's clock_timestamp()). On the target one session
# polls that row every POLL seconds (a PL/pgSQL loop, a fresh snapshot per read) and
# records, for each heartbeat it sees arrive, its age then: the time that change took
# to become visible there, give or take one poll. The same is then measured for a
# native subscription (copy_data = false) on the same, caught-up target. Prints p50,
# p99 and max per run; medians across runs.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
SCALE=${SCALE:-10}
DURATION=${DURATION:-30}
POLL=${POLL:-0.002}
D=lag
OUT=$BENCH_DIR/lag-results.tsv
clusters_up
: > "$OUT"
# For $1 seconds, the age on the target of each heartbeat when first seen there.
# Each read commits (no snapshot or transaction id held across the run, which
# would hold back the target's pruning); the ages are kept in memory until the end.
sample() {
  psql_t -d "$D" -At <<SQL
CREATE TEMP TABLE seen (age float8);
DO \$\$
DECLARE
  last bigint := -1; now_n bigint; sent timestamptz; ages float8[] := '{}';
  until timestamptz := clock_timestamp() + interval '$1 seconds';
BEGIN
  WHILE clock_timestamp() < until LOOP
    SELECT n, t INTO now_n, sent FROM heartbeat;
    IF now_n <> last THEN
      IF last >= 0 THEN ages := ages || extract(epoch FROM clock_timestamp() - sent)::float8; END IF;
      last := now_n;
    END IF;
    COMMIT;
    PERFORM pg_sleep($POLL);
  END LOOP;
  INSERT INTO seen SELECT unnest(ages);
END
\$\$;
SELECT age FROM seen;
SQL
}
percentile() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; print a[i]}'; }
for run in $(seq "$REPEAT"); do
  psql_s -d "$D" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null 2>&1 || true
  psql_s -d postgres -c "DROP DATABASE IF EXISTS $D WITH (FORCE)" -c "CREATE DATABASE $D" >/dev/null
  psql_t -d postgres -c "DROP DATABASE IF EXISTS $D WITH (FORCE)" -c "CREATE DATABASE $D" >/dev/null
  "$PGBIN/pgbench" -q -i -s "$SCALE" "${S[@]}" "$D" >/dev/null 2>&1
  psql_s -d "$D" -c "CREATE TABLE heartbeat (id int PRIMARY KEY, n bigint NOT NULL, t timestamptz)" -c "INSERT INTO heartbeat VALUES (1, 0, clock_timestamp())" >/dev/null
  max_tps=$("$PGBIN/pgbench" -n -c 4 -j 2 -T 10 "${S[@]}" "$D" 2>/dev/null | awk '/^tps/ {print int($3)}')
  rate=$((max_tps / 2))
  "$PGFERRY" copy --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" $D)" >/dev/null 2>&1
  for consumer in pgferry native; do
    if [ "$consumer" = pgferry ]; then
      "$PGFERRY" follow --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" $D)" > "$BENCH_DIR/lag-follow.log" 2>&1 &
      follow=$!
    else
      psql_s -d "$D" -c "CREATE PUBLICATION native_pub FOR ALL TABLES" >/dev/null
      psql_t -d "$D" -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=$SOCK port=$SRC_PORT dbname=$D user=postgres' PUBLICATION native_pub WITH (copy_data = false)" >/dev/null
    fi
    stop=$BENCH_DIR/lag-stop; rm -f "$stop"
    (while [ ! -f "$stop" ]; do echo "UPDATE heartbeat SET n = n + 1, t = clock_timestamp();"; sleep 0.05; done | psql_s -d "$D" >/dev/null) &
    beat=$!
    # Sampling starts once a heartbeat written now has arrived.
    until [ "$(psql_t -d "$D" -Atc "SELECT clock_timestamp() - t < interval '1 second' FROM heartbeat" 2>/dev/null)" = t ]; do sleep 0.1; done
    sample "$DURATION" > "$BENCH_DIR/lag-samples" &
    sampler=$!
    "$PGBIN/pgbench" -n -c 4 -j 2 -R "$rate" -T "$DURATION" "${S[@]}" "$D" >/dev/null 2>&1
    wait "$sampler"; touch "$stop"; wait "$beat" 2>/dev/null || true
    if [ "$consumer" = pgferry ]; then
      kill -TERM "$follow" 2>/dev/null || true; wait "$follow" 2>/dev/null || true
      # The native subscriber starts from the same data: pgferry's target, caught up.
      psql_s -d "$D" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null
    else
      psql_t -d "$D" -c "DROP SUBSCRIPTION native_sub" >/dev/null
    fi
    cp "$BENCH_DIR/lag-samples" "$BENCH_DIR/lag-samples-$consumer"
    n=$(wc -l < "$BENCH_DIR/lag-samples")
    p50=$(percentile 50 < "$BENCH_DIR/lag-samples"); p99=$(percentile 99 < "$BENCH_DIR/lag-samples"); max=$(percentile 100 < "$BENCH_DIR/lag-samples")
    printf '%s\t%s\tmax_tps=%s\trate=%s\tsamples=%s\tp50=%s\tp99=%s\tmax=%s\n' "$run" "$consumer" "$max_tps" "$rate" "$n" "$p50" "$p99" "$max" | tee -a "$OUT"
  done
done
m() { grep -P "\t$1\t" "$OUT" | awk -F'\t' -v f="$2" '{for (i=1;i<=NF;i++) if (index($i, f"=")==1) print substr($i, length(f)+2)}' | median; }
for c in pgferry native; do
  echo "$c: median over $REPEAT runs: lag p50 $(m $c p50) s, p99 $(m $c p99) s, max $(m $c max) s at half the source's maximum rate"
done
