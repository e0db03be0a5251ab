#!/usr/bin/env bash
# The cost of --metrics-listen on change capture's drain: one backlog (a pgbench
# tpcb-like run of DURATION seconds with no consumer attached) recorded in two
# pgferry slots that hold the same starting point (two migrations, `plain` and
# `metered`, copied one after the other with no write in between, into two target
# databases); then each drains it with `pgferry follow --until-caught-up`, without
# and with --metrics-listen (scraped every second while it runs, as Prometheus
# would, more often than it usually does). The order alternates between runs.
# Prints both times and the ratio. REPEAT runs, medians.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
SCALE=${SCALE:-10}
DURATION=${DURATION:-30}
METRICS_PORT=${METRICS_PORT:-59187}
D=drain
OUT=$BENCH_DIR/metrics-overhead-results.tsv
clusters_up
: > "$OUT"

drain() { # $1 migration; $2.. extra flags; prints seconds
  local name=$1; shift
  local start end
  start=$(now)
  "$PGFERRY" follow --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_$name)" --name "$name" \
    --until-caught-up "$@" >/dev/null 2>&1
  end=$(now)
  echo "$end - $start" | bc
}

for run in $(seq "$REPEAT"); do
  psql_s -d "$D" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null 2>&1 || true
  psql_s -d postgres -c "DROP DATABASE IF EXISTS $D WITH (FORCE)" -c "CREATE DATABASE $D" >/dev/null
  for name in plain metered; do psql_t -d postgres -c "DROP DATABASE IF EXISTS ${D}_$name WITH (FORCE)" -c "CREATE DATABASE ${D}_$name" >/dev/null; done
  "$PGBIN/pgbench" -q -i -s "$SCALE" "${S[@]}" "$D" >/dev/null 2>&1
  for name in plain metered; do
    "$PGFERRY" copy --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_$name)" --name "$name" >/dev/null 2>&1
  done
  "$PGBIN/pgbench" -n -c 4 -j 2 -T "$DURATION" "${S[@]}" "$D" >/dev/null 2>&1
  backlog=$(psql_s -d "$D" -Atc "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), min(restart_lsn))) FROM pg_replication_slots")
  scraped=$BENCH_DIR/last-scrape.txt; rm -f "$scraped"
  scrape() { while sleep 1; do curl -s "http://127.0.0.1:$METRICS_PORT/metrics" > "$scraped.new" && mv "$scraped.new" "$scraped" || true; done; }
  metered() { scrape & local scraper=$!; drain metered --metrics-listen "127.0.0.1:$METRICS_PORT"; kill $scraper; }
  if [ $((run % 2)) = 1 ]; then plain=$(drain plain); with=$(metered); else with=$(metered); plain=$(drain plain); fi
  same=$([ "$(psql_t -d ${D}_plain -Atc "SELECT sum(abalance), count(*) FROM pgbench_accounts")" = "$(psql_t -d ${D}_metered -Atc "SELECT sum(abalance), count(*) FROM pgbench_accounts")" ] && echo same || echo DIFFERENT)
  served=$(grep -sc '^pgferry_transactions_applied_total' "$scraped" || true)
  printf '%s\tbacklog=%s\tplain=%s\tmetrics=%s\ttargets=%s\tscraped=%s\n' "$run" "$backlog" "$plain" "$with" "$same" "$served" | tee -a "$OUT"
done
p=$(awk -F'\t' '{sub("plain=", "", $3); print $3}' "$OUT" | median)
m=$(awk -F'\t' '{sub("metrics=", "", $4); print $4}' "$OUT" | median)
echo "median drain: without metrics ${p}s, with --metrics-listen ${m}s; with / without = $(echo "scale=3; $m / $p" | bc)"
