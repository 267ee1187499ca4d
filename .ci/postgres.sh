# A private PostgreSQL cluster for the tests, sourced by .ci/run (or by a developer:
# `source .ci/postgres.sh && start_test_postgres`, then `cargo test --workspace`).
#
# start_test_postgres: installs PostgreSQL from Debian's packages when no server binaries are
# found, creates a cluster in a temporary directory (as the `postgres` user when running as
# root, since the server refuses to run as root), listening on 127.0.0.1 only, on a free port,
# with its unix socket in the same directory, and exports CMP_TEST_POSTGRES_URL for the tests.
# stop_test_postgres stops it and removes the directory; start_test_postgres installs it as an
# EXIT trap.

find_postgres_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

# Runs a command as the cluster's owner.
as_cluster_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_test_postgres() {
  local bin port
  if ! bin=$(find_postgres_bin); then
    echo "   PostgreSQL not found: installing it from Debian's packages"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    bin=$(find_postgres_bin)
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
  fi
  CMP_TEST_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cmp-test-pg.XXXXXX")
  export CMP_TEST_PG_DIR
  trap stop_test_postgres EXIT
  chmod 755 "$CMP_TEST_PG_DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$CMP_TEST_PG_DIR"
  # A free loopback port, picked by the OS.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_cluster_owner "$bin/initdb" -D "$CMP_TEST_PG_DIR/data" -U cmp --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$CMP_TEST_PG_DIR/initdb.log" 2>&1 \
    || { cat "$CMP_TEST_PG_DIR/initdb.log"; return 1; }
  # fsync off: a test cluster holds nothing worth a flush, and the suite creates a database per
  # test. Enough connections for three replicas and the parallel tests.
  as_cluster_owner "$bin/pg_ctl" -D "$CMP_TEST_PG_DIR/data" -l "$CMP_TEST_PG_DIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $CMP_TEST_PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    start >/dev/null || { cat "$CMP_TEST_PG_DIR/server.log"; return 1; }
  export CMP_TEST_POSTGRES_URL="postgres://cmp@127.0.0.1:$port/postgres"
  export CMP_TEST_PG_BIN="$bin"
  echo "   PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (cluster in $CMP_TEST_PG_DIR)"
}

stop_test_postgres() {
  if [ -n "${CMP_TEST_PG_DIR:-}" ] && [ -d "$CMP_TEST_PG_DIR" ]; then
    as_cluster_owner "$CMP_TEST_PG_BIN/pg_ctl" -D "$CMP_TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$CMP_TEST_PG_DIR"
  fi
}
