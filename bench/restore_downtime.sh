#!/usr/bin/env bash
# The downtime part of `pgferry target restore` (foreign keys back NOT VALID,
# triggers back, sequences set) against the same restore with full validation, on
# a target prepared for a DMS load: TABLES child tables of ROWS rows each, every
# one with a foreign key to one parent table, a trigger and a sequence.
#
# Why 1,000 child tables of 10,000 rows rather than a few big tables with many
# foreign keys each: the catalog work of the downtime part is per constraint, the
# validation scan is per referencing row; one constraint per table keeps both
# proportional to what the benchmark varies and matches a wide OLTP schema. Each
# VALIDATE scans its child and probes the parent's primary key.
#
# Usage: bench/restore_downtime.sh   (TABLES=1000 ROWS=10000 REPEAT=3 by default)
# Runs as root (servers as postgres via runuser) or as a normal user.
set -euo pipefail
TABLES=${TABLES:-1000}
ROWS=${ROWS:-10000}
PARENTS=${PARENTS:-100000}
REPEAT=${REPEAT:-3}
BENCH_DIR=${BENCH_DIR:-/tmp/pgferry-bench-restore}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${PORT:-55442}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGFERRY=${PGFERRY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pgferry}
SOCK=$BENCH_DIR/sock
url() { echo "postgresql:///$1?host=$SOCK&port=$PORT&user=postgres&sslmode=disable"; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

[ -x "$PGFERRY" ] || { echo "build first: cargo build --release -p pgferry-cli" >&2; exit 2; }
mkdir -p "$BENCH_DIR" "$SOCK"
[ "$(id -u)" = 0 ] && chown postgres "$BENCH_DIR" "$SOCK"
if [ ! -f "$BENCH_DIR/data/PG_VERSION" ]; then
  as_pg "$PGBIN/initdb" -D "$BENCH_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >> "$BENCH_DIR/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
shared_buffers = 512MB
maintenance_work_mem = 256MB
max_wal_size = 8GB
max_locks_per_transaction = 256
CONF
fi
as_pg "$PGBIN/pg_ctl" -D "$BENCH_DIR/data" -l "$BENCH_DIR/log" -w status >/dev/null 2>&1 ||
  as_pg "$PGBIN/pg_ctl" -D "$BENCH_DIR/data" -l "$BENCH_DIR/log" -w start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$BENCH_DIR/data" -m fast -w stop >/dev/null' EXIT

echo "building $TABLES tables x $ROWS rows ..." >&2
psql_ -d postgres -c "DROP DATABASE IF EXISTS source WITH (FORCE)" -c "DROP DATABASE IF EXISTS prepared WITH (FORCE)" -c "CREATE DATABASE source" >/dev/null
psql_ -d source <<SQL >/dev/null
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent SELECT generate_series(1, $PARENTS);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN RETURN NEW; END\$\$;
SELECT format('CREATE TABLE child_%s (id bigserial PRIMARY KEY, parent_id int NOT NULL);
               INSERT INTO child_%s SELECT g, 1 + (g * 7919) %% $PARENTS FROM generate_series(1, $ROWS) g;
               SELECT setval(''child_%s_id_seq'', $ROWS);
               ALTER TABLE child_%s ADD CONSTRAINT child_%s_parent FOREIGN KEY (parent_id) REFERENCES parent(id);
               CREATE TRIGGER touch BEFORE INSERT ON child_%s FOR EACH ROW EXECUTE FUNCTION touch();', i, i, i, i, i, i)
FROM generate_series(1, $TABLES) i \gexec
VACUUM ANALYZE;
SQL
psql_ -d postgres -c "CREATE DATABASE prepared TEMPLATE source" >/dev/null
prepare_cmd=("$PGFERRY" target prepare --source "$(url source)" --target "$(url prepared)")
t0=$(now); "${prepare_cmd[@]}" >/dev/null; t1=$(now)
prepare_s=$(printf "%.2f" "$(echo "$t1 - $t0" | bc)")
psql_ -d postgres -c "CHECKPOINT" >/dev/null

declare -A times
for run in $(seq 1 "$REPEAT"); do
  for mode in later now; do
    psql_ -d postgres -c "DROP DATABASE IF EXISTS target WITH (FORCE)" -c "CREATE DATABASE target TEMPLATE prepared" -c "CHECKPOINT" >/dev/null
    t0=$(now)
    "$PGFERRY" target restore --source "$(url source)" --target "$(url target)" --validate "$mode" >/dev/null
    t1=$(now)
    elapsed=$(printf "%.2f" "$(echo "$t1 - $t0" | bc)")
    times[$mode]+="$elapsed"$'\n'
    echo "run $run --validate $mode: $elapsed s" >&2
  done
done
later=$(printf '%s' "${times[later]}" | median)
later=$(printf "%.2f" "$later")
full=$(printf '%s' "${times[now]}" | median)
full=$(printf "%.2f" "$full")
ratio=$(echo "scale=1; $full / $later" | bc)
fks=$(psql_ -d target -Atc "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated")
echo "downtime part (--validate later): ${later}s; full restore (--validate now): ${full}s; ratio ${ratio}x; validated FKs after: $fks" >&2

section=$(cat <<MD
<!-- restore_downtime:begin -->
## Restore downtime (\`bench/restore_downtime.sh\`)

$TABLES foreign keys over $((TABLES * ROWS)) rows ($TABLES child tables x $ROWS rows, each with a
foreign key to one parent of $PARENTS rows, a trigger and a sequence), PostgreSQL 15 on
this machine ($(nproc) cores, shared with other work), one cluster (source and target are
two databases of it), fsync on. Median of $REPEAT runs, each on a fresh copy of the
prepared target (\`CREATE DATABASE target TEMPLATE prepared\`).

| step | median seconds |
|---|---|
| \`pgferry target prepare\` (save, drop $TABLES FKs, disable $TABLES triggers; one run) | $prepare_s |
| \`pgferry target restore --validate later\`: the downtime part (FKs NOT VALID, triggers, sequences) | $later |
| \`pgferry target restore --validate now\`: the same plus \`VALIDATE CONSTRAINT\` of every FK | $full |
| **full restore / downtime part** | **${ratio}x** |

Each run, in seconds (later / now): $(paste -d/ <(printf '%s' "${times[later]}") <(printf '%s' "${times[now]}") | paste -sd' ' | sed 's/ /, /g').
The machine's two cores are shared with other builds and benchmarks, so single runs
vary; the downtime part is one transaction per object (3 per child table), committed
asynchronously, with one synchronous commit at the end making all of them durable.

Commands (\`URL(db)\` = \`$(url DB)\`):

\`\`\`sh
TABLES=$TABLES ROWS=$ROWS REPEAT=$REPEAT bench/restore_downtime.sh
pgferry target prepare --source URL(source) --target URL(prepared)
pgferry target restore --source URL(source) --target URL(target) --validate later   # timed
pgferry target restore --source URL(source) --target URL(target) --validate now     # timed
\`\`\`
<!-- restore_downtime:end -->
MD
)
results=$ROOT/bench/RESULTS.md
[ -f "$results" ] || printf '# Benchmark results\n' > "$results"
python3 - "$results" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
pattern = re.compile(r"<!-- restore_downtime:begin -->.*?<!-- restore_downtime:end -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
echo "$section"
