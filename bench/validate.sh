#!/usr/bin/env bash
# Validation benchmark: after a pgferry copy of the dataset, time a full
# `pgferry validate` beside `pgcopydb compare data` on the same pair, REPEAT times,
# and compare with the copy's own time. Prints medians and ratios.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
OUT=$BENCH_DIR/validate-results.tsv
clusters_up
: > "$OUT"
reset_target
start=$(now); "$PGFERRY" copy --source "$SRC_URL" --target "$TGT_URL" --jobs "$JOBS" --index-jobs "$JOBS" >/dev/null 2>&1; end=$(now)
printf 'copy\t1\t%s\n' "$(echo "$end - $start" | bc)" | tee -a "$OUT"
for run in $(seq "$REPEAT"); do
  start=$(now); "$PGFERRY" validate --source "$SRC_URL" --target "$TGT_URL" --jobs "$JOBS" >/dev/null; rc=$?; end=$(now)
  printf 'pgferry_validate\t%s\t%s\texit=%s\n' "$run" "$(echo "$end - $start" | bc)" "$rc" | tee -a "$OUT"
  if command -v pgcopydb >/dev/null; then
    rm -rf "$BENCH_DIR/pgcopydb-compare"
    start=$(now)
    PGCOPYDB_SOURCE_PGURI="postgresql:///$DB?host=$SOCK&port=$SRC_PORT&user=postgres" \
    PGCOPYDB_TARGET_PGURI="postgresql:///$DB?host=$SOCK&port=$TGT_PORT&user=postgres" \
      pgcopydb compare data --dir "$BENCH_DIR/pgcopydb-compare" >/dev/null 2>&1; rc=$?
    end=$(now)
    printf 'pgcopydb_compare\t%s\t%s\texit=%s\n' "$run" "$(echo "$end - $start" | bc)" "$rc" | tee -a "$OUT"
  fi
done
copy=$(awk '$1 == "copy" {print $3}' "$OUT")
v=$(awk '$1 == "pgferry_validate" {print $3}' "$OUT" | median)
p=$(awk '$1 == "pgcopydb_compare" {print $3}' "$OUT" | median)
echo "median: pgferry validate ${v}s, pgcopydb compare data ${p:-n/a}s, pgferry copy ${copy}s"
echo "validate / copy = $(echo "scale=2; $v / $copy" | bc)   validate / pgcopydb compare = $( [ -n "$p" ] && echo "scale=2; $v / $p" | bc)"
