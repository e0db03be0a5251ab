#!/usr/bin/env bash
# A whole instance (issue #18).
#
# Part 1, downtime: for each N in COUNTS, N databases (pgbench tables at SCALE each)
# on the source, each under its own steady pgbench load (one client, RATE
# transactions/s, as the application role bench_app); `pgferry start --all-databases`
# copies them and catches up, then follows them in the background, and `pgferry
# cutover --all-databases` takes over from it and cuts the instance over with one
# switch. The downtime it reports (the longest database's,
# fence to the switch's end) is recorded; `pgferry abort --force --all-databases`
# lifts the fence for the next run. Goal: 16 databases under 2 s on this machine.
#
# Part 2, copy: COPY_DBS databases at COPY_SCALE, no writes: `start
# --all-databases --until-caught-up` (one process, side by side, --jobs shared) against
# the same databases moved one after another (`start --until-caught-up` per database).
#
# The databases are named idb_NN and selected with --database, so nothing else on
# the benchmark clusters takes part. Prints medians of REPEAT runs.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
COUNTS=${COUNTS:-"1 4 16"}
SCALE=${SCALE:-1}
RATE=${RATE:-20}
COPY_DBS=${COPY_DBS:-4}
COPY_SCALE=${COPY_SCALE:-10}
PARTS=${PARTS:-"downtime copy"}
OUT=$BENCH_DIR/instance-results.tsv
clusters_up
: > "$OUT"

names() { for i in $(seq -w 1 "$1"); do echo "idb_$i"; done; }
selection() { for db in $(names "$1"); do printf -- '--database %s ' "$db"; done; }
server_url() { url "$1" postgres; }

# N source databases with pgbench tables, their empty namesakes on the target,
# and nothing of an earlier run on either side.
databases_up() { # $1 count; $2 scale
  for db in $(psql_s -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'idb\_%'"); do
    psql_s -d postgres -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
  done
  psql_s -d postgres -c "DO \$\$BEGIN CREATE ROLE bench_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
  for db in $(names "$1"); do
    psql_s -d postgres -c "CREATE DATABASE $db" >/dev/null
    "$PGBIN/pgbench" -q -i -s "$2" "${S[@]}" "$db" >/dev/null 2>&1
    psql_s -d "$db" -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO bench_app" >/dev/null
  done
  psql_t -d postgres -c "DO \$\$BEGIN CREATE ROLE bench_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
  targets_empty "$1"
}

targets_empty() { # $1 count: fresh target databases, no slot or publication left on the source
  for db in $(psql_t -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'idb\_%'"); do
    psql_t -d postgres -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
  done
  for db in $(names "$1"); do
    psql_t -d postgres -c "CREATE DATABASE $db" >/dev/null
    psql_s -d "$db" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()" >/dev/null
    psql_s -d "$db" -Atc "SELECT 'DROP PUBLICATION ' || quote_ident(pubname) || ';' FROM pg_publication" | psql_s -d "$db" >/dev/null
  done
  psql_s -d postgres -c "CHECKPOINT" >/dev/null; psql_t -d postgres -c "CHECKPOINT" >/dev/null
}

size_mb() { # $1 count: the source databases' total size
  psql_s -d postgres -Atc "SELECT round(sum(pg_database_size(datname)) / 1048576.0) FROM pg_database WHERE datname LIKE 'idb\_%'"
}

if [[ $PARTS == *downtime* ]]; then
  for n in $COUNTS; do
    databases_up "$n" "$SCALE"
    for run in $(seq "$REPEAT"); do
      [ "$run" = 1 ] || targets_empty "$n"
      writers=()
      for db in $(names "$n"); do
        "$PGBIN/pgbench" -n -c 1 -j 1 -R "$RATE" -T 900 "${S[@]/postgres/bench_app}" "$db" >/dev/null 2>&1 &
        writers+=($!)
      done
      # shellcheck disable=SC2046
      "$PGFERRY" start --source "$(server_url "$SRC_PORT")" --target "$(server_url "$TGT_PORT")" --all-databases \
        $(selection "$n") --until-caught-up --keyless-tables-are-insert-only --jobs "$JOBS" --service >/dev/null 2>&1
      # As in production: start follows every database, and the cutover takes over
      # from it (each database's WAL distance counts the others' writes too, so a
      # stopped follower falls "behind" while the others write).
      # shellcheck disable=SC2046
      "$PGFERRY" start --source "$(server_url "$SRC_PORT")" --target "$(server_url "$TGT_PORT")" --all-databases \
        $(selection "$n") --keyless-tables-are-insert-only --service >/dev/null 2>&1 &
      follower=$!
      # As an operator would: until the dry run says go (every database caught up).
      for _ in $(seq 60); do
        sleep 2
        # shellcheck disable=SC2046
        "$PGFERRY" cutover --dry-run --source "$(server_url "$SRC_PORT")" --target "$(server_url "$TGT_PORT")" \
          --all-databases $(selection "$n") --switch-command true --keyless-tables-are-insert-only >/dev/null 2>&1 && break
      done
      # shellcheck disable=SC2046
      report=$("$PGFERRY" cutover --source "$(server_url "$SRC_PORT")" --target "$(server_url "$TGT_PORT")" \
        --all-databases $(selection "$n") --switch-command true --keyless-tables-are-insert-only 2>&1) || true
      echo "$report" > "$BENCH_DIR/instance-cutover-$n-$run.txt"
      kill "$follower" 2>/dev/null || true; wait "$follower" 2>/dev/null || true
      kill "${writers[@]}" 2>/dev/null || true; wait "${writers[@]}" 2>/dev/null || true
      downtime=$(echo "$report" | sed -n 's/^instance: .* downtime \([0-9.]*\) s.*/\1/p')
      printf 'downtime\t%s\t%s\t%s\n' "$n" "$run" "${downtime:-failed}" | tee -a "$OUT"
      [ -n "$downtime" ] || echo "$report" | tail -20
      # shellcheck disable=SC2046
      # After a switch, abort lifts the old source's fence only when forced: here the
      # only application is pgbench, stopped above.
      "$PGFERRY" abort --force --source "$(server_url "$SRC_PORT")" --target "$(server_url "$TGT_PORT")" \
        --all-databases $(selection "$n") >/dev/null 2>&1 || echo "abort failed for $n databases, run $run"
    done
  done
fi

if [[ $PARTS == *copy* ]]; then
  databases_up "$COPY_DBS" "$COPY_SCALE"
  mb=$(size_mb "$COPY_DBS")
  for run in $(seq "$REPEAT"); do
    together() {
      targets_empty "$COPY_DBS"
      local start; start=$(now)
      # shellcheck disable=SC2046
      "$PGFERRY" start --source "$(server_url "$SRC_PORT")" --target "$(server_url "$TGT_PORT")" --all-databases \
        $(selection "$COPY_DBS") --until-caught-up --keyless-tables-are-insert-only --jobs "$JOBS" --service >/dev/null 2>&1
      printf 'copy\ttogether\t%s\t%s\t%s\n' "$run" "$(echo "$(now) - $start" | bc)" "$mb" | tee -a "$OUT"
    }
    one_after_another() {
      targets_empty "$COPY_DBS"
      local start; start=$(now)
      for db in $(names "$COPY_DBS"); do
        "$PGFERRY" start --source "$(url "$SRC_PORT" "$db")" --target "$(url "$TGT_PORT" "$db")" \
          --until-caught-up --keyless-tables-are-insert-only --jobs "$JOBS" --service >/dev/null 2>&1
      done
      printf 'copy\tsequential\t%s\t%s\t%s\n' "$run" "$(echo "$(now) - $start" | bc)" "$mb" | tee -a "$OUT"
    }
    # The first reader of freshly loaded tables pays for hint bits: alternate the order.
    if [ $((run % 2)) = 1 ]; then together; one_after_another; else one_after_another; together; fi
  done
fi

for n in $COUNTS; do
  grep -q "^downtime	$n	.*[0-9]$" "$OUT" || continue
  m=$(awk -F'\t' -v n="$n" '$1 == "downtime" && $2 == n && $4 != "failed" {print $4}' "$OUT" | median)
  echo "median instance cutover downtime, $n database(s): ${m} s ($(grep -c "^downtime	$n	" "$OUT") runs, $(grep -c "^downtime	$n	.*failed" "$OUT") failed)"
done
if grep -q '^copy' "$OUT"; then
  t=$(awk -F'\t' '$1 == "copy" && $2 == "together" {print $4}' "$OUT" | median)
  s=$(awk -F'\t' '$1 == "copy" && $2 == "sequential" {print $4}' "$OUT" | median)
  mb=$(awk -F'\t' '$1 == "copy" {print $5; exit}' "$OUT")
  echo "median copy of $COPY_DBS databases ($mb MB): --all-databases ${t} s ($(echo "scale=1; $mb / $t" | bc) MB/s), one after another ${s} s ($(echo "scale=1; $mb / $s" | bc) MB/s); together / sequential = $(echo "scale=3; $t / $s" | bc)"
fi
