#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, from Debian's packages.
#
#   server.sh start DIR PORT   initdb a cluster in DIR (if new), start it on
#                              127.0.0.1:PORT, print its URL
#   server.sh stop DIR         stop it (fast shutdown)
#   server.sh restart DIR      stop and start again (same port)
#
# PostgreSQL refuses to run as root: as root, the server runs as the
# `postgres` user the Debian package creates. Trust authentication on
# loopback only; the cluster is for tests and is thrown away.
set -euo pipefail

bin="${CAPFENCE_PG_BIN:-}"
if [ -z "$bin" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
if [ ! -x "$bin/pg_ctl" ]; then
  echo "server.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2
  exit 2
fi

as_server() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd="${1:?usage: server.sh start DIR PORT | stop DIR | restart DIR}"
dir="${2:?usage: server.sh start DIR PORT | stop DIR | restart DIR}"
case "$cmd" in
  start)
    port="${3:?server.sh start DIR PORT}"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$dir"
      if ! runuser -u postgres -- test -x "$dir"; then
        echo "server.sh: the postgres user cannot reach $dir (make its parents traversable)" >&2
        exit 2
      fi
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_server "$bin/initdb" -D "$dir" -U postgres -A trust --no-sync >/dev/null
      {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = ''"
        echo "max_connections = 200"
        echo "fsync = on"
      } >>"$dir/postgresql.conf"
    fi
    as_server "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_server "$bin/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
    ;;
  restart)
    as_server "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null
    ;;
  *)
    echo "server.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
