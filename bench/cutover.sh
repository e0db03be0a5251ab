#!/usr/bin/env bash
# Cutover downtime under load: per run, a fresh `pgferry copy` of the dataset, a
# steady pgbench load (tpcb-like, -R 100) from an application role, change capture
# caught up, then `pgferry cutover`; the downtime it reports (fence to switch,
# including the fence's verification, the drain and the sequences) is recorded.
# `pgferry abort` then lifts the fence for the next run. Prints the median.
# (pgbench_history has no key and only receives inserts: the cutover is told so.)
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
OUT=$BENCH_DIR/cutover-results.tsv
clusters_up
: > "$OUT"
psql_s -d "$DB" -c "DO \$\$BEGIN CREATE ROLE bench_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$;
                     GRANT ALL ON ALL TABLES IN SCHEMA public TO bench_app" >/dev/null
for run in $(seq "$REPEAT"); do
  reset_target
  "$PGFERRY" copy --source "$SRC_URL" --target "$TGT_URL" --jobs "$JOBS" >/dev/null 2>&1
  "$PGBIN/pgbench" -n -c 2 -j 1 -R 100 -T 300 "${S[@]/postgres/bench_app}" "$DB" >/dev/null 2>&1 &
  load=$!
  sleep 3
  "$PGFERRY" follow --source "$SRC_URL" --target "$TGT_URL" --until-caught-up >/dev/null 2>&1
  sleep 3
  "$PGFERRY" follow --source "$SRC_URL" --target "$TGT_URL" --until-caught-up >/dev/null 2>&1
  report=$("$PGFERRY" cutover --source "$SRC_URL" --target "$TGT_URL" --switch-command true --keyless-tables-are-insert-only 2>&1)
  kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true
  downtime=$(echo "$report" | sed -n 's/.*Downtime (fence to switch): \([0-9.]*\) s.*/\1/p')
  steps=$(echo "$report" | awk '/ s$/ && !/Downtime/ {printf "%s=%s ", $1, $(NF-1)}')
  printf 'pgferry\t%s\t%s\t%s\n' "$run" "${downtime:-failed}" "$steps" | tee -a "$OUT"
  [ -n "$downtime" ] || echo "$report"
  "$PGFERRY" abort --source "$SRC_URL" --target "$TGT_URL" >/dev/null
done
echo "median downtime: $(awk '{print $3}' "$OUT" | median) s"
