#!/usr/bin/env bash
# Makes sure the test servers run on loopback: PostgreSQL (5432, database test), MariaDB
# (3306, root without password, database test) and Redis (6379), and the tools the tests
# run (memcached, wrk). Starts a server that is installed but stopped, installs (apt-get)
# one that is missing. Safe to run repeatedly.
set -euo pipefail

log() { echo "services: $*" >&2; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then log "$name is up"; return 0; fi
    sleep 0.5
  done
  log "$name did not come up"; return 1
}

postgres_up() { pg_isready -h 127.0.0.1 -p 5432 -q >/dev/null 2>&1; }
if ! command -v pg_isready >/dev/null 2>&1 || ! postgres_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"; apt_install postgresql
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for PostgreSQL postgres_up
fi
# trust auth on loopback and a database named test, as DESIGN.md's test servers have
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main reload || true
  fi
  su postgres -c "createdb test" 2>/dev/null || true
fi
# pg_isready says yes to a server that cannot start a session (a CI run once failed on
# "could not open shared memory segment": its dynamic shared memory had been lost), so
# the check is a real query; a server that accepts but cannot serve is restarted.
postgres_serves() { psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; }
if ! postgres_serves; then
  log "PostgreSQL accepts connections but cannot serve a query; restarting it"
  psql -h 127.0.0.1 -U postgres -d test -c 'select 1' 2>&1 | head -n 3 >&2 || true
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main restart || true
  wait_for "PostgreSQL (database test)" postgres_serves
fi

mariadb_up() { mariadb -h 127.0.0.1 -P 3306 -uroot -e 'select 1' >/dev/null 2>&1; }
if ! command -v mariadb >/dev/null 2>&1 || ! mariadb_up; then
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    log "installing MariaDB"; apt_install mariadb-server
  fi
  log "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB mariadb_up
fi
mariadb -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test' 2>/dev/null || true
wait_for "MariaDB (database test)" mariadb -h 127.0.0.1 -uroot test -e 'select 1'

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! command -v redis-cli >/dev/null 2>&1 || ! redis_up; then
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing Redis"; apt_install redis-server
  fi
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
fi

# Memcached: the tests start their own instances on spare ports; only the binary is needed.
if ! command -v memcached >/dev/null 2>&1; then
  log "installing memcached"; apt_install memcached
fi

# wrk: the benchmark harness's HTTP tests drive the apps with it.
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk"; apt_install wrk
fi
