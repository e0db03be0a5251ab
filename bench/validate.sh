#!/usr/bin/env bash
# Validation benchmark: after a pgferry copy of the dataset, time a full
# `pgferry validate` beside a whole-table comparison (per table, on both sides:
# count(*) and a sum of row hashes, JOBS tables at a time: what `pgcopydb compare
# data` does; pgcopydb 0.10 from Debian has no `compare` command, so it cannot run
# here) and beside the copy itself. Prints medians and ratios.
source "$(dirname "$0")/common.sh"
REPEAT=${REPEAT:-3}
OUT=$BENCH_DIR/validate-results.tsv
clusters_up
: > "$OUT"

whole_table() {  # one side: TABLE -> "count sum"
  "$PGBIN/psql" -X -At -h "$SOCK" -p "$1" -U postgres -d "$DB" -c "SELECT count(*) || ' ' || coalesce(sum(hashtextextended(t::text, 0)), 0) FROM ONLY $2 t"
}
export -f whole_table; export PGBIN SOCK DB SRC_PORT TGT_PORT
whole_table_compare() {
  psql_s -d "$DB" -Atc "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY pg_relation_size(c.oid) DESC" |
    xargs -P "$JOBS" -I{} bash -c '[ "$(whole_table $SRC_PORT "{}")" = "$(whole_table $TGT_PORT "{}")" ] || echo "differs: {}"'
}

reset_target
start=$(now); "$PGFERRY" copy --source "$SRC_URL" --target "$TGT_URL" --jobs "$JOBS" --index-jobs "$JOBS" >/dev/null 2>&1; end=$(now)
printf 'copy\t1\t%s\n' "$(echo "$end - $start" | bc)" | tee -a "$OUT"
for run in $(seq "$REPEAT"); do
  rc=0; start=$(now); "$PGFERRY" validate --source "$SRC_URL" --target "$TGT_URL" --jobs "$JOBS" >/dev/null || rc=$?; end=$(now)
  printf 'pgferry_validate\t%s\t%s\texit=%s\n' "$run" "$(echo "$end - $start" | bc)" "$rc" | tee -a "$OUT"
  start=$(now); diffs=$(whole_table_compare); end=$(now)
  printf 'whole_table\t%s\t%s\t%s\n' "$run" "$(echo "$end - $start" | bc)" "${diffs:-equal}" | tee -a "$OUT"
done
copy=$(awk '$1 == "copy" {print $3}' "$OUT")
v=$(awk '$1 == "pgferry_validate" {print $3}' "$OUT" | median)
w=$(awk '$1 == "whole_table" {print $3}' "$OUT" | median)
echo "median: pgferry validate ${v}s, whole-table hashes ${w}s, pgferry copy ${copy}s"
echo "validate / copy = $(echo "scale=2; $v / $copy" | bc)   validate / whole-table = $(echo "scale=2; $v / $w" | bc)"
