#!/usr/bin/env bash
# Seeded migration: the time from "the physical copy is up" to "replicating"
# (pgferry start --seeded ... --until-caught-up: preflight, the copy's end read
# from its log and checked, inherited state removed, change capture caught up),
# at two database sizes, beside a full pgferry copy of the same database.
# The copy itself (an RDS snapshot restore in production) is a pg_basebackup
# started as a standby and promoted; it is not timed.
#   SIZES="6 60" RUNS=3 bench/seed.sh      (SCALE 6 is about 100 MB, 60 about 1 GB)
source "$(dirname "$0")/common.sh"
SIZES=${SIZES:-"6 60"}
RUNS=${RUNS:-3}
COPY_PORT=${COPY_PORT:-55434}
COPY_DIR=$BENCH_DIR/copy
COPY_URL="postgresql:///$DB?host=$SOCK&port=$COPY_PORT&user=postgres&sslmode=disable"
cargo build --release --locked -q -p pgferry-cli

copy_down() {
  as_pg "$PGBIN/pg_ctl" -D "$COPY_DIR" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$COPY_DIR" "$BENCH_DIR/copy.log"
}

# A physical copy of the source, taken while it runs, promoted on its own port.
copy_up() {
  copy_down
  as_pg "$PGBIN/pg_basebackup" -D "$COPY_DIR" -h "$SOCK" -p "$SRC_PORT" -U postgres -X stream -c fast
  as_pg touch "$COPY_DIR/standby.signal"
  as_pg sh -c "printf \"port = $COPY_PORT\nprimary_conninfo = 'host=$SOCK port=$SRC_PORT user=postgres'\n\" >> '$COPY_DIR/postgresql.auto.conf'"
  as_pg "$PGBIN/pg_ctl" -D "$COPY_DIR" -l "$BENCH_DIR/copy.log" -w start >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$COPY_DIR" -w promote >/dev/null
}

results=()
for scale in $SIZES; do
  SCALE=$scale "$(dirname "$0")/dataset.sh" >/dev/null
  size=$(psql_s -d "$DB" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")
  seeded=()
  for run in $(seq "$RUNS"); do
    reset_target
    "$PGFERRY" seed prepare --source "$SRC_URL" --name seedbench >/dev/null
    copy_up
    # Changes after the copy, for change capture to carry.
    "$PGBIN/pgbench" -n -T 3 -c 2 "${S[@]}" "$DB" >/dev/null 2>&1
    t0=$(now)
    "$PGFERRY" start --seeded --seed-log "$BENCH_DIR/copy.log" --source "$SRC_URL" --target "$COPY_URL" \
      --name seedbench --until-caught-up --keyless-tables-are-insert-only >/dev/null
    t1=$(now)
    seeded+=("$(echo "$t1 - $t0" | bc)")
    copy_down
  done
  full=()
  for run in $(seq "$RUNS"); do
    reset_target
    t0=$(now)
    "$PGFERRY" copy --source "$SRC_URL" --target "$TGT_URL" --name fullbench --jobs "$JOBS" >/dev/null
    t1=$(now)
    full+=("$(echo "$t1 - $t0" | bc)")
  done
  s=$(printf '%s\n' "${seeded[@]}" | median)
  f=$(printf '%s\n' "${full[@]}" | median)
  results+=("$(printf 'SCALE %-3s %-8s  seeded: copy up -> replicating %6.2f s (runs: %s)   full copy %7.2f s (runs: %s)   ratio %.3f' \
    "$scale" "$size" "$s" "${seeded[*]}" "$f" "${full[*]}" "$(echo "$s / $f" | bc -l)")")
done
reset_target
printf '%s\n' "${results[@]}"
