#!/usr/bin/env bash
# Copy benchmark: pgferry and its peers move the same dataset from an empty
# target to a usable one (data, indexes, constraints, sequences), round-robin,
# REPEAT times each. Prints medians and ratios (copied by hand, with the runs,
# into bench/RESULTS.md), then pgferry's seconds per step in each run and how it
# gave the tables statistics (carried from the source where the target is 18:
# TGT_PGBIN=<18's bin directory> in a fresh BENCH_DIR, see common.sh).
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
PEERS=${PEERS:-"pgferry floor dump_dir dump_pipe pgcopydb lr"}
OUT=$BENCH_DIR/copy-results.tsv
clusters_up
: > "$OUT"; rm -f "$BENCH_DIR"/pgferry-copy-*.txt
# Roles are per cluster: the target gets the source's (as pg_dumpall --roles-only
# would give it), or the peers' restores of GRANTs fail.
psql_s -d postgres -Atc "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> 'postgres'" | while read -r role; do
  psql_t -d postgres -c "DO \$\$BEGIN CREATE ROLE \"$role\"; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
done

floor_copy() {  # bare binary COPY pipes into index-less tables, then the index builds
  "$PGBIN/pg_dump" "${S[@]}" -Fc --schema-only -f "$BENCH_DIR/floor.dump" "$DB"
  "$PGBIN/pg_restore" "${T[@]}" -d "$DB" --section=pre-data "$BENCH_DIR/floor.dump"
  psql_s -d "$DB" -Atc "SELECT format('%I.%I', n.nspname, c.relname) || ' ' || (pg_relation_size(c.oid) / 8192)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'
      ORDER BY pg_relation_size(c.oid) DESC" |
  while read -r t pages; do  # tables over 100 MB in two page ranges, as the research's floor2
    if [ "$pages" -gt 12800 ]; then echo "$t 0 $((pages / 2))"; echo "$t $((pages / 2))"; else echo "$t"; fi
  done | xargs -P "$JOBS" -L 1 "$(dirname "$0")/floor_piece.sh"
  "$PGBIN/pg_restore" "${T[@]}" -d "$DB" --section=post-data -j "$JOBS" "$BENCH_DIR/floor.dump"
}

run_peer() {
  case $1 in
    pgferry) "$PGFERRY" copy --source "$SRC_URL" --target "$TGT_URL" --jobs "$JOBS" --index-jobs "$JOBS" --split-larger-than 100MB \
        > "$BENCH_DIR/pgferry-copy-$run.txt" ;;
    floor) floor_copy ;;
    dump_dir) rm -rf "$BENCH_DIR/dumpdir"
      "$PGBIN/pg_dump" "${S[@]}" -Fd -j "$JOBS" -Z0 -f "$BENCH_DIR/dumpdir" "$DB"
      "$PGBIN/pg_restore" "${T[@]}" -d "$DB" -j "$JOBS" --exit-on-error "$BENCH_DIR/dumpdir" ;;
    dump_pipe) "$PGBIN/pg_dump" "${S[@]}" "$DB" | "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "${T[@]}" -d "$DB" >/dev/null ;;
    pgcopydb) rm -rf "$BENCH_DIR/pgcopydb"
      PGCOPYDB_SOURCE_PGURI="postgresql:///$DB?host=$SOCK&port=$SRC_PORT&user=postgres" \
      PGCOPYDB_TARGET_PGURI="postgresql:///$DB?host=$SOCK&port=$TGT_PORT&user=postgres" \
        pgcopydb clone --table-jobs "$JOBS" --index-jobs "$JOBS" --split-tables-larger-than 100MB --dir "$BENCH_DIR/pgcopydb" >/dev/null 2>&1 ;;
    lr) "$PGBIN/pg_dump" "${S[@]}" -Fc --schema-only -f "$BENCH_DIR/lr.dump" "$DB"
      "$PGBIN/pg_restore" "${T[@]}" -d "$DB" --section=pre-data "$BENCH_DIR/lr.dump"
      psql_s -d "$DB" -c "CREATE PUBLICATION bench_pub FOR ALL TABLES" >/dev/null
      psql_t -d "$DB" -c "CREATE SUBSCRIPTION bench_sub CONNECTION 'host=$SOCK port=$SRC_PORT dbname=$DB user=postgres' PUBLICATION bench_pub" >/dev/null
      until [ "$(psql_t -d "$DB" -Atc "SELECT count(*) FILTER (WHERE srsubstate <> 'r') FROM pg_subscription_rel")" = 0 ]; do sleep 0.2; done
      "$PGBIN/pg_restore" "${T[@]}" -d "$DB" --section=post-data -j "$JOBS" "$BENCH_DIR/lr.dump"
      psql_t -d "$DB" -c "ALTER SUBSCRIPTION bench_sub DISABLE" -c "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION bench_sub" >/dev/null ;;
  esac
}

verify() {
  local q="SELECT (SELECT count(*) FROM pgbench_accounts) || '/' || (SELECT count(*) FROM documents) || '/' || (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')"
  [ "$(psql_s -d "$DB" -Atc "$q")" = "$(psql_t -d "$DB" -Atc "$q")" ] && echo ok || echo FAIL
}

for run in $(seq "$REPEAT"); do
  for peer in $PEERS; do
    if [ "$peer" = pgcopydb ] && ! command -v pgcopydb >/dev/null; then continue; fi
    reset_target
    ticks=$(cpu_ticks); start=$(now); run_peer "$peer"; end=$(now)
    sleep 1  # lets the postmasters reap the run's last backends
    cpu=$(echo "scale=2; ($(cpu_ticks) - $ticks) / $(getconf CLK_TCK)" | bc)
    secs=$(echo "$end - $start" | bc)
    printf '%s\t%s\t%s\t%s\t%s\n' "$peer" "$run" "$secs" "$(verify)" "$cpu" | tee -a "$OUT"
  done
done

echo; echo "median wall seconds and CPU seconds, servers and clients (JOBS=$JOBS, REPEAT=$REPEAT):"
for peer in $PEERS; do
  # A peer that did not run (pgcopydb not installed) has no line.
  awk -v p="$peer" '$1 == p' "$OUT" | grep -q . || continue
  m=$(awk -v p="$peer" '$1 == p {print $3}' "$OUT" | median)
  c=$(awk -v p="$peer" '$1 == p {print $5}' "$OUT" | median)
  [ -n "$m" ] && printf '%-10s %6.2f s  runs: %s  verify: %s cpu %6.2f s  runs: %s\n' "$peer" "$m" \
    "$(awk -v p="$peer" '$1 == p {printf "%.1f ", $3}' "$OUT")" "$(awk -v p="$peer" '$1 == p {print $4}' "$OUT" | sort -u | tr '\n' ' ')" \
    "$c" "$(awk -v p="$peer" '$1 == p {printf "%.1f ", $5}' "$OUT")"
done | tee "$BENCH_DIR/copy-medians.txt"
ratio() {  # column: 2 for wall, the one after "cpu" for CPU
  local pg floor best
  pg=$(awk -v c="$1" '$1 == "pgferry" {print $c}' "$BENCH_DIR/copy-medians.txt")
  floor=$(awk -v c="$1" '$1 == "floor" {print $c}' "$BENCH_DIR/copy-medians.txt")
  best=$(awk -v c="$1" '$1 != "pgferry" && $1 != "floor" {print $c}' "$BENCH_DIR/copy-medians.txt" | sort -n | head -1)
  echo "pgferry / best peer = $(echo "scale=2; $pg / $best" | bc)   pgferry / floor = $(echo "scale=2; $pg / $floor" | bc)"
}
echo "wall: $(ratio 2)"
cpu_column=$(awk '$1 == "pgferry" {for (i = 1; i <= NF; i++) if ($i == "cpu") print i + 1}' "$BENCH_DIR/copy-medians.txt")
echo "cpu:  $(ratio "$cpu_column")"
# pgferry's own time split (the summary's seconds per step) in each run, and how
# its last run gave the tables statistics (carried from the source on an 18 target).
echo; echo "pgferry's seconds per step, run by run:"
for run in $(seq "$REPEAT"); do
  [ -f "$BENCH_DIR/pgferry-copy-$run.txt" ] || continue
  awk '/^$/ {blank++; next} blank == 1 && match($0, / +[0-9.]+ s$/) {
         v = substr($0, RSTART); gsub(/[ s]/, "", v); printf "%s%s=%s", sep, substr($0, 1, RSTART - 1), v; sep = "; "
       } END {print ""}' "$BENCH_DIR/pgferry-copy-$run.txt"
done | tee "$BENCH_DIR/copy-pgferry-steps.txt"
[ -f "$BENCH_DIR/pgferry-copy-$REPEAT.txt" ] && grep -A8 '^statistics:' "$BENCH_DIR/pgferry-copy-$REPEAT.txt" | grep -v '^migration\|^$' || true
