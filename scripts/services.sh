#!/usr/bin/env bash
# Start the local MariaDB and PostgreSQL servers the integration tests use, if they are down.
set -uo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq 1 40); do up "$1" && return 0; sleep 0.5; done; return 1; }
if ! up 3306; then
  echo "starting MariaDB…" >&2
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 2>/dev/null || true
  wait_for 3306 || echo "MariaDB is not reachable on 127.0.0.1:3306" >&2
fi
if ! up 5432; then
  echo "starting PostgreSQL…" >&2
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  [ -n "$ver" ] && pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
  wait_for 5432 || echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2
fi
if [ "${CI:-}" = "true" ] && { ! up 3306 || ! up 5432; }; then
  echo "CI=true and a required server is down: failing instead of skipping" >&2
  exit 1
fi
exit 0
