#!/usr/bin/env bash
# Cutover downtime under load: per run, a fresh `pgferry copy` of the dataset, a
# steady pgbench load (tpcb-like, -R 100) from an application role, change capture
# caught up, then `pgferry cutover`; the downtime it reports (fence to switch,
# including the fence's verification, the drain and the sequences) is recorded.
# `pgferry abort --force` then lifts the fence for the next run (the switch is
# done, so abort needs --force; the only application, pgbench, has stopped). Prints the median.
# (pgbench_history has no key and only receives inserts: the cutover is told so.)
# Beside it, in the same run, the bare cutover done by hand with a native
# subscription under the same load: database read-only, application sessions
# terminated, wait for the subscription's slot to pass the source's position, set
# the sequences (no fence check, no validation).
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
PARTS=${PARTS:-"pgferry native"}
OUT=$BENCH_DIR/cutover-results.tsv
clusters_up
touch "$OUT"
# A run killed inside the native cutover leaves the database read-only.
psql_s -d postgres -c "ALTER DATABASE $DB RESET default_transaction_read_only" >/dev/null
psql_s -d "$DB" -c "DO \$\$BEGIN CREATE ROLE bench_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$;
                     GRANT ALL ON ALL TABLES IN SCHEMA public TO bench_app" >/dev/null
# Roles are the server's: the target needs the application's too (the cutover's gate compares them).
psql_t -d postgres -c "DO \$\$BEGIN CREATE ROLE bench_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
[[ $PARTS == *pgferry* ]] && { grep -v '^pgferry' "$OUT" > "$OUT.new" || true; mv "$OUT.new" "$OUT"; }
for run in $(seq "$REPEAT"); do
  [[ $PARTS == *pgferry* ]] || break
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
  "$PGFERRY" abort --force --source "$SRC_URL" --target "$TGT_URL" >/dev/null   # after the switch: forced
done

# The native subscription: schema by pg_dump, initial copy by the subscription.
native_down() {
  psql_t -d "$DB" -c "DROP SUBSCRIPTION IF EXISTS native_sub" >/dev/null 2>&1 || true
  psql_s -d "$DB" -c "DROP PUBLICATION IF EXISTS native_pub" >/dev/null
}
if [[ $PARTS == *native* ]]; then
grep -v '^native' "$OUT" > "$OUT.new" || true; mv "$OUT.new" "$OUT"
native_down
reset_target
"$PGBIN/pg_dump" -s -x -O "${S[@]}" "$DB" | psql_t -d "$DB" >/dev/null
psql_s -d "$DB" -c "CREATE PUBLICATION native_pub FOR ALL TABLES" >/dev/null
psql_t -d "$DB" -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=$SOCK port=$SRC_PORT dbname=$DB user=postgres' PUBLICATION native_pub" >/dev/null
until [ "$(psql_t -d "$DB" -Atc "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]; do sleep 1; done
for run in $(seq "$REPEAT"); do
  "$PGBIN/pgbench" -n -c 2 -j 1 -R 100 -T 300 "${S[@]/postgres/bench_app}" "$DB" >/dev/null 2>&1 &
  load=$!
  sleep 6
  t0=$(now)
  psql_s -d "$DB" -c "ALTER DATABASE $DB SET default_transaction_read_only = on" \
    -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$DB' AND usename = 'bench_app'" >/dev/null
  position=$(psql_s -d "$DB" -Atc "SELECT pg_current_wal_lsn()")
  until [ "$(psql_s -d "$DB" -Atc "SELECT confirmed_flush_lsn >= '$position' FROM pg_replication_slots WHERE slot_name = 'native_sub'")" = t ]; do :; done
  psql_s -d "$DB" -Atc "SELECT format('SELECT setval(%L, %s, %L);', format('%I.%I', schemaname, sequencename), coalesce(last_value, 1), last_value IS NOT NULL) FROM pg_sequences" | psql_t -d "$DB" >/dev/null
  t1=$(now)
  kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true
  printf 'native\t%s\t%s\t\n' "$run" "$(echo "$t1 - $t0" | bc)" | tee -a "$OUT"
  psql_s -d postgres -c "ALTER DATABASE $DB RESET default_transaction_read_only" >/dev/null
done
native_down
fi
p=$(awk '$1 == "pgferry" {print $3}' "$OUT" | median)
n=$(awk '$1 == "native" {print $3}' "$OUT" | median)
echo "median downtime: pgferry $p s (fence verified, changed rows validated), native by hand $n s; ratio $(echo "$p / $n" | bc -l | cut -c1-5)"
