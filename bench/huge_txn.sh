#!/usr/bin/env bash
# One huge transaction during change capture: a table of ROWS rows (5,000,000 by
# default) is updated whole in one UPDATE while the consumer runs, first
# `pgferry follow` (under /usr/bin/time -v, for its peak RSS), then a native
# subscription (streaming = on, copy_data = false). Each consumer has a source
# database of its own (the same rows), so neither slot decodes the other's
# UPDATE. The time measured is from the UPDATE's commit on the source until the
# consumer's slot confirms the commit's position (the target holds it); the
# UPDATE's own duration is printed too (a streaming consumer decodes, and may
# apply, while it runs). LDWM sets the source's logical_decoding_work_mem for the
# run (the server default unless set; 64kB streams even a tiny table). REPEAT
# runs, medians.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-1}
ROWS=${ROWS:-5000000}
LDWM=${LDWM:-64MB}
D=huge
OUT=$BENCH_DIR/huge_txn-results.tsv
clusters_up
psql_s -d postgres -c "ALTER SYSTEM SET logical_decoding_work_mem = '$LDWM'" -c "SELECT pg_reload_conf()" >/dev/null
: > "$OUT"

# Waits until the slot named like $2 of source database $1 is streamed to a consumer
# (slots of other databases, left by other benchmarks, are not looked at).
active() { until [ "$(psql_s -d "$1" -Atc "SELECT bool_or(active) FROM pg_replication_slots WHERE slot_name LIKE '$2' AND database = current_database()")" = t ]; do sleep 0.1; done; }
# Runs the UPDATE on source database $1; prints its duration and its commit's end position.
update_all() {
  local start end lsn
  start=$(now)
  # The position right after the commit (same session, nothing written between).
  lsn=$(psql_s -d "$1" -At -c "UPDATE big SET v = v + 1" -c "SELECT pg_current_wal_insert_lsn()" | tail -1)
  end=$(now)
  echo "$(echo "$end - $start" | bc) $lsn"
}
# Seconds from now until a slot named like $2 on source database $1 confirmed position $3.
confirmed_after() {
  local start end
  start=$(now)
  until [ "$(psql_s -d "$1" -Atc "SELECT bool_and(confirmed_flush_lsn >= '$3') FROM pg_replication_slots WHERE slot_name LIKE '$2' AND database = current_database()")" = t ]; do sleep 0.05; done
  end=$(now)
  echo "$end - $start" | bc
}

for run in $(seq "$REPEAT"); do
  for side in p n; do
    db=${D}_$side
    psql_s -d "$db" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()" >/dev/null 2>&1 || true
    psql_t -d "$db" -c "DROP SUBSCRIPTION IF EXISTS native_sub" >/dev/null 2>&1 || true
    psql_s -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    psql_t -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    psql_s -d "$db" -c "CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, pad text)" \
      -c "INSERT INTO big SELECT g, 0, md5(g::text) FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE big" >/dev/null
  done
  psql_s -d postgres -c "CHECKPOINT" >/dev/null

  # pgferry: copy, then follow until SIGTERM.
  "$PGFERRY" copy --source "$(url "$SRC_PORT" ${D}_p)" --target "$(url "$TGT_PORT" ${D}_p)" >/dev/null 2>&1
  /usr/bin/time -v -o "$BENCH_DIR/huge_txn-time.txt" \
    "$PGFERRY" follow --source "$(url "$SRC_PORT" ${D}_p)" --target "$(url "$TGT_PORT" ${D}_p)" >/dev/null 2>"$BENCH_DIR/huge_txn-follow.log" &
  follow=$!
  active ${D}_p 'pgferry%'
  read -r upd_p lsn_p < <(update_all ${D}_p)
  ours=$(confirmed_after ${D}_p 'pgferry%' "$lsn_p")
  # SIGTERM to pgferry itself (time(1) would die of it without a report).
  kill -TERM "$(pgrep -P "$follow")"; wait "$follow" || true
  rss_mb=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$BENCH_DIR/huge_txn-time.txt")

  # Native: the same schema and rows, a subscription that streams.
  "$PGBIN/pg_dump" "${S[@]}" ${D}_n | psql_t -d ${D}_n >/dev/null
  psql_s -d ${D}_n -c "CREATE PUBLICATION native_pub FOR TABLE big" >/dev/null
  psql_t -d ${D}_n -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=$SOCK port=$SRC_PORT dbname=${D}_n user=postgres' PUBLICATION native_pub WITH (copy_data = false, streaming = on)" >/dev/null
  active ${D}_n native_sub
  read -r upd_n lsn_n < <(update_all ${D}_n)
  native=$(confirmed_after ${D}_n native_sub "$lsn_n")

  same=$([ "$(psql_t -d ${D}_p -Atc "SELECT sum(v), count(*) FROM big")" = "$(psql_t -d ${D}_n -Atc "SELECT sum(v), count(*) FROM big")" ] && echo same || echo DIFFERENT)
  psql_t -d ${D}_n -c "DROP SUBSCRIPTION native_sub" >/dev/null
  printf '%s\trows=%s\tupdate=%s/%s\tpgferry=%s\tpgferry_rss_mb=%s\tnative=%s\ttargets=%s\n' \
    "$run" "$ROWS" "$upd_p" "$upd_n" "$ours" "$rss_mb" "$native" "$same" | tee -a "$OUT"
done
psql_s -d postgres -c "ALTER SYSTEM RESET logical_decoding_work_mem" -c "SELECT pg_reload_conf()" >/dev/null
p=$(awk -F'\t' '{sub("pgferry=", "", $4); print $4}' "$OUT" | median)
n=$(awk -F'\t' '{sub("native=", "", $6); print $6}' "$OUT" | median)
r=$(awk -F'\t' '{sub("pgferry_rss_mb=", "", $5); print $5}' "$OUT" | median)
echo "median from the UPDATE's commit to applied: pgferry ${p}s (peak RSS ${r} MB), native subscription ${n}s; pgferry / native = $(echo "scale=2; $p / $n" | bc)"
