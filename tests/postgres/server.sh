#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, from Debian's packages.
#
#   server.sh start DIR PORT [tls]
#                              initdb a cluster in DIR (if new), start it on
#                              127.0.0.1:PORT, print its URL; with `tls`, the
#                              server offers TLS with a certificate for
#                              localhost and 127.0.0.1 signed by a new test CA,
#                              DIR/ca.pem
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
    port="${3:?server.sh start DIR PORT [tls]}"
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
      if [ "${4:-}" = tls ]; then
        (
          cd "$dir"
          openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=capfence test CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
          openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout server.key -out server.csr 2>/dev/null
          printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
          openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 2 -extfile server.ext -out server.crt 2>/dev/null
          chmod 600 server.key
          if [ "$(id -u)" = 0 ]; then chown postgres: server.key server.crt; fi
          chmod 644 ca.pem
        )
        {
          echo "ssl = on"
          echo "ssl_cert_file = 'server.crt'"
          echo "ssl_key_file = 'server.key'"
        } >>"$dir/postgresql.conf"
      fi
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
