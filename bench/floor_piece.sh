#!/usr/bin/env bash
# One stream of the floor: psql COPY TO | psql COPY FROM for a table or a page range.
# Arguments: TABLE FIRST_PAGE END_PAGE (pages empty for the whole table).
source "$(dirname "$0")/common.sh"
t=$1 first=${2:-} end=${3:-}
if [ -z "$first" ]; then out="COPY $t TO STDOUT (FORMAT binary)"
elif [ -z "$end" ]; then out="COPY (SELECT * FROM ONLY $t WHERE ctid >= '($first,0)'::tid) TO STDOUT (FORMAT binary)"
else out="COPY (SELECT * FROM ONLY $t WHERE ctid >= '($first,0)'::tid AND ctid < '($end,0)'::tid) TO STDOUT (FORMAT binary)"; fi
"$PGBIN/psql" -X "${S[@]}" -d "$DB" -c "$out" | "$PGBIN/psql" -X -q "${T[@]}" -d "$DB" -c "COPY $t FROM STDIN (FORMAT binary)"
