#!/usr/bin/env bash
# The cost of --metrics-listen on change capture's drain: one backlog (a pgbench
# tpcb-like run of DURATION seconds with no consumer attached) recorded in two
# pgferry slots that hold the same starting point (two migrations, `a` and `b`,
# copied one after the other with no write in between, into two target databases);
# then each drains it with `pgferry follow --until-caught-up`, one without and one
# with --metrics-listen (scraped every second while it runs, as Prometheus would,
# more often than it usually does). Which one is metered, and which drains first,
# rotate between runs (four combinations).
# Prints both times, wall and pgferry's own CPU (user + system, which a noisy neighbour
# barely moves), and the ratios. REPEAT runs, medians.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
SCALE=${SCALE:-10}
DURATION=${DURATION:-30}
METRICS_PORT=${METRICS_PORT:-59187}
D=drain
OUT=$BENCH_DIR/metrics-overhead-results.tsv
clusters_up
: > "$OUT"

drain() { # $1 migration; $2.. extra flags; prints "wall_seconds cpu_seconds" (cpu: pgferry's user + system)
  local name=$1; shift
  local start end cpu
  cpu=$BENCH_DIR/cpu-$name.txt
  start=$(now)
  /usr/bin/time -f '%U %S' -o "$cpu" "$PGFERRY" follow --source "$(url "$SRC_PORT" $D)" \
    --target "$(url "$TGT_PORT" ${D}_$name)" --name "$name" --until-caught-up "$@" >/dev/null 2>&1
  end=$(now)
  echo "$(echo "$end - $start" | bc) $(awk '{print $1 + $2}' "$cpu")"
}

for run in $(seq "$REPEAT"); do
  psql_s -d "$D" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null 2>&1 || true
  psql_s -d postgres -c "DROP DATABASE IF EXISTS $D WITH (FORCE)" -c "CREATE DATABASE $D" >/dev/null
  for name in a b; do psql_t -d postgres -c "DROP DATABASE IF EXISTS ${D}_$name WITH (FORCE)" -c "CREATE DATABASE ${D}_$name" >/dev/null; done
  "$PGBIN/pgbench" -q -i -s "$SCALE" "${S[@]}" "$D" >/dev/null 2>&1
  for name in a b; do
    "$PGFERRY" copy --source "$(url "$SRC_PORT" $D)" --target "$(url "$TGT_PORT" ${D}_$name)" --name "$name" >/dev/null 2>&1
  done
  "$PGBIN/pgbench" -n -c 4 -j 2 -T "$DURATION" "${S[@]}" "$D" >/dev/null 2>&1
  backlog=$(psql_s -d "$D" -Atc "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), min(restart_lsn))) FROM pg_replication_slots")
  scraped=$BENCH_DIR/last-scrape.txt; rm -f "$scraped"
  scrape() { while sleep 1; do curl -s "http://127.0.0.1:$METRICS_PORT/metrics" > "$scraped.new" && mv "$scraped.new" "$scraped" || true; done; }
  # Which migration is metered and which drains first both rotate, so that neither a
  # database's nor a position's own bias reads as the metrics' cost.
  if [ $(((run - 1) / 2 % 2)) = 0 ]; then metered_name=a plain_name=b; else metered_name=b plain_name=a; fi
  metered() { scrape & local scraper=$!; drain $metered_name --metrics-listen "127.0.0.1:$METRICS_PORT"; kill $scraper; }
  if [ $((run % 2)) = 1 ]; then plain=$(drain $plain_name); with=$(metered); else with=$(metered); plain=$(drain $plain_name); fi
  same=$([ "$(psql_t -d ${D}_a -Atc "SELECT sum(abalance), count(*) FROM pgbench_accounts")" = "$(psql_t -d ${D}_b -Atc "SELECT sum(abalance), count(*) FROM pgbench_accounts")" ] && echo same || echo DIFFERENT)
  served=$(grep -sc '^pgferry_transactions_applied_total' "$scraped" || true)
  read -r plain plain_cpu <<< "$plain"; read -r with with_cpu <<< "$with"
  printf '%s\tbacklog=%s\tplain=%s\tmetrics=%s\tplain_cpu=%s\tmetrics_cpu=%s\ttargets=%s\tscraped=%s\tmetered=%s\n' \
    "$run" "$backlog" "$plain" "$with" "$plain_cpu" "$with_cpu" "$same" "$served" "$metered_name" | tee -a "$OUT"
done
column_median() { awk -F'\t' -v n="$1" -v key="$2=" '{sub(key, "", $n); print $n}' "$OUT" | median; }
ratio_median() { awk -F'\t' -v a="$1" -v b="$2" -v ka="$3=" -v kb="$4=" '{sub(ka, "", $a); sub(kb, "", $b); print $b / $a}' "$OUT" | median; }
p=$(column_median 3 plain); m=$(column_median 4 metrics)
pc=$(column_median 5 plain_cpu); mc=$(column_median 6 metrics_cpu)
echo "median drain wall: without metrics ${p}s, with --metrics-listen ${m}s; median of the runs' ratios $(ratio_median 3 4 plain metrics)"
echo "median pgferry cpu: without metrics ${pc}s, with --metrics-listen ${mc}s; median of the runs' ratios $(ratio_median 5 6 plain_cpu metrics_cpu)"
