# Shared settings and helpers for pgferry's benchmarks (sourced, not run).
# Two PostgreSQL 15 clusters on unix sockets under $BENCH_DIR; servers run as the
# postgres user when the benchmark runs as root.
set -euo pipefail
BENCH_DIR=${BENCH_DIR:-/tmp/pgferry-bench}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
# The target's server programs (initdb, pg_ctl): TGT_PGBIN=<18's bin> in a fresh
# BENCH_DIR benchmarks a 15 -> 18 copy, where pgferry carries the statistics.
TGT_PGBIN=${TGT_PGBIN:-$PGBIN}
SRC_PORT=${SRC_PORT:-55432}
TGT_PORT=${TGT_PORT:-55433}
DB=${DB:-bench}
JOBS=${JOBS:-2}
SOCK=$BENCH_DIR/sock
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGFERRY=${PGFERRY:-$ROOT/target/release/pgferry}
SRC_URL="postgresql:///$DB?host=$SOCK&port=$SRC_PORT&user=postgres&sslmode=disable"
TGT_URL="postgresql:///$DB?host=$SOCK&port=$TGT_PORT&user=postgres&sslmode=disable"
# A URL for database $2 on the cluster listening on port $1.
url() { echo "postgresql:///$2?host=$SOCK&port=$1&user=postgres&sslmode=disable"; }
S=(-h "$SOCK" -p "$SRC_PORT" -U postgres)
T=(-h "$SOCK" -p "$TGT_PORT" -U postgres)

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_s() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "${S[@]}" "$@"; }
psql_t() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "${T[@]}" "$@"; }
now() { date +%s.%N; }

clusters_up() {
  mkdir -p "$BENCH_DIR" "$SOCK"
  [ "$(id -u)" = 0 ] && chown postgres "$BENCH_DIR" "$SOCK"
  for side in src:$SRC_PORT tgt:$TGT_PORT; do
    local name=${side%%:*} port=${side##*:} bin=$PGBIN
    [ "$name" = tgt ] && bin=$TGT_PGBIN
    if [ ! -f "$BENCH_DIR/$name/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$BENCH_DIR/$name" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >> "$BENCH_DIR/$name/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$SOCK'
wal_level = logical
max_replication_slots = 40
max_wal_senders = 40
max_worker_processes = 8
max_logical_replication_workers = 4
shared_buffers = 1GB
maintenance_work_mem = 256MB
work_mem = 16MB
max_wal_size = 8GB
checkpoint_timeout = 15min
CONF
      [ "$name" = tgt ] && echo "synchronous_commit = off" >> "$BENCH_DIR/$name/postgresql.conf"
    fi
    as_pg "$bin/pg_ctl" -D "$BENCH_DIR/$name" -l "$BENCH_DIR/$name.log" -w status >/dev/null 2>&1 ||
      as_pg "$bin/pg_ctl" -D "$BENCH_DIR/$name" -l "$BENCH_DIR/$name.log" -w start >/dev/null
  done
}

clusters_down() {
  as_pg "$PGBIN/pg_ctl" -D "$BENCH_DIR/src" -m fast -w stop >/dev/null 2>&1 || true
  as_pg "$TGT_PGBIN/pg_ctl" -D "$BENCH_DIR/tgt" -m fast -w stop >/dev/null 2>&1 || true
}

# A fresh, empty target database; and nothing of an earlier run left on the source.
reset_target() {
  psql_t -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
  psql_s -d "$DB" -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" >/dev/null
  psql_s -d "$DB" -Atc "SELECT 'DROP PUBLICATION ' || quote_ident(pubname) || ';' FROM pg_publication" | psql_s -d "$DB" >/dev/null
  psql_s -d postgres -c "CHECKPOINT" >/dev/null; psql_t -d postgres -c "CHECKPOINT" >/dev/null
}

# CPU clock ticks used so far by both clusters' finished processes (backends and
# workers, counted by their postmaster when it reaps them) and by this shell's
# finished children: the work a peer costs, steadier than wall time on a shared
# machine (background writers and the checkpointer are not counted).
cpu_ticks() {
  local total=0 pid
  for pid in $(head -1 "$BENCH_DIR/src/postmaster.pid") $(head -1 "$BENCH_DIR/tgt/postmaster.pid"); do
    total=$((total + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat")))
  done
  echo $((total + $(awk '{print $16 + $17}' "/proc/$$/stat")))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
