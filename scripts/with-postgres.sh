#!/usr/bin/env bash
# Runs a command with a throwaway local Postgres server:
#
#   scripts/with-postgres.sh cargo test -p longcat-store --test postgres
#
# Starts a private cluster (temporary data directory, 127.0.0.1 on a free port, trust auth,
# fsync off), exports LONGCAT_TEST_POSTGRES_URL=postgres://longcat@127.0.0.1:PORT/postgres
# (a superuser, so tests can create their own databases), runs the command, then stops the
# server and deletes its data. Installs Debian's `postgresql` package when no server binaries
# are found (as root or with sudo). LONGCAT_PG_TLS=1 makes the server TLS-only (self-signed
# certificate) and adds ?sslmode=require to the URL. Exits 75 (EX_TEMPFAIL) without running
# the command when no server can be started, so callers can tell "no Postgres here" from a
# failing command.
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
# Any failure while setting the server up means "no Postgres here".
trap 'echo "with-postgres: setup failed (line $LINENO)" >&2; exit 75' ERR

find_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"
  elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
  fi
}

BINDIR=$(find_bindir)
if [ -z "$BINDIR" ] && [ "${LONGCAT_NO_INSTALL:-0}" != "1" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    echo "with-postgres: installing Debian's postgresql package" >&2
    if $SUDO apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq postgresql >/dev/null 2>&1; then
      BINDIR=$(find_bindir)
    fi
  fi
fi
if [ -z "$BINDIR" ]; then
  echo "with-postgres: no Postgres server binaries found and none could be installed" >&2
  exit 75
fi

# initdb and the server refuse to run as root: use the postgres system user then.
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    echo "with-postgres: running as root but there is no 'postgres' user" >&2
    exit 75
  fi
  RUN_AS=(runuser -u postgres --)
fi

PGDATA=$(mktemp -d "${TMPDIR:-/tmp}/longcat-pg.XXXXXX")
chmod 0755 "$PGDATA"
[ ${#RUN_AS[@]} -gt 0 ] && chown postgres "$PGDATA"

# A free port: ask the kernel for one.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
  echo $((40000 + RANDOM % 20000)))

cleanup() {
  "${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$PGDATA/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PGDATA"
}
trap cleanup EXIT

if ! "${RUN_AS[@]}" "$BINDIR/initdb" -D "$PGDATA/data" -U longcat -A trust -E UTF8 --no-sync \
  >"$PGDATA/initdb.log" 2>&1; then
  echo "with-postgres: initdb failed:" >&2
  cat "$PGDATA/initdb.log" >&2
  exit 75
fi
SERVER_OPTS="-p $PORT -k $PGDATA -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
URL_QUERY=""
# LONGCAT_PG_TLS=1: serve TLS only (self-signed certificate) and connect with sslmode=require.
if [ "${LONGCAT_PG_TLS:-0}" = "1" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
    -keyout "$PGDATA/data/server.key" -out "$PGDATA/data/server.crt" >/dev/null 2>&1
  chmod 0600 "$PGDATA/data/server.key"
  [ ${#RUN_AS[@]} -gt 0 ] && chown postgres "$PGDATA/data/server.key" "$PGDATA/data/server.crt"
  echo "hostnossl all all 0.0.0.0/0 reject" >"$PGDATA/hba.tmp"
  echo "hostssl all all 127.0.0.1/32 trust" >>"$PGDATA/hba.tmp"
  cat "$PGDATA/hba.tmp" >"$PGDATA/data/pg_hba.conf"
  SERVER_OPTS="$SERVER_OPTS -c ssl=on"
  URL_QUERY="?sslmode=require"
fi
if ! "${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$PGDATA/data" -l "$PGDATA/server.log" -w -t 60 \
  -o "$SERVER_OPTS" \
  start >/dev/null 2>&1; then
  echo "with-postgres: server did not start:" >&2
  cat "$PGDATA/server.log" >&2 || true
  exit 75
fi

export LONGCAT_TEST_POSTGRES_URL="postgres://longcat@127.0.0.1:$PORT/postgres$URL_QUERY"
echo "with-postgres: Postgres $("$BINDIR/postgres" --version | awk '{print $3}') at $LONGCAT_TEST_POSTGRES_URL" >&2
trap - ERR
set +e
"$@"
status=$?
set -e
exit $status
