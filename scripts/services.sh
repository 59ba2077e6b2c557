# Sourced by scripts/run and scripts/test: makes sure PostgreSQL and
# Valkey/Redis answer on loopback, installing them from the distribution's
# packages and starting them when they do not (and, for the tests, that
# Chromium and the Redis cluster tools are installed).
#
# PostgreSQL: 127.0.0.1:5432, user postgres without a password (loopback
# connections are trusted; on a fresh install this script adds that rule).
# Valkey: valkey-server if installed, else Redis 7 (same protocol), on
# 127.0.0.1:6379.

PG_HOST=127.0.0.1
PG_PORT=5432
VALKEY_PORT=6379

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  say "installing $* from the distribution's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_answers() {
  psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1
}

ensure_postgres() {
  pg_answers && return 0
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql postgresql-client
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  for _ in $(seq 1 30); do pg_answers && return 0; sleep 1; done
  # A fresh Debian cluster asks for a password on TCP: trust loopback.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if [ -f "$hba" ] && ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    say "trusting loopback connections for user postgres in $hba"
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  for _ in $(seq 1 30); do pg_answers && return 0; sleep 1; done
  say "PostgreSQL does not answer on $PG_HOST:$PG_PORT"; return 1
}

valkey_answers() {
  local cli
  cli=$(command -v valkey-cli || command -v redis-cli) || return 1
  [ "$("$cli" -h 127.0.0.1 -p "$VALKEY_PORT" ping 2>/dev/null)" = PONG ]
}

ensure_valkey() {
  valkey_answers && return 0
  if ! command -v valkey-server >/dev/null 2>&1 && ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
  fi
  local server data
  server=$(command -v valkey-server || command -v redis-server)
  data="${FLAGMETER_DATA_DIR:-$(pwd)/.data}/valkey"
  mkdir -p "$data"
  say "starting $(basename "$server") on 127.0.0.1:$VALKEY_PORT (AOF in $data)"
  "$server" --daemonize yes --bind 127.0.0.1 --port "$VALKEY_PORT" --save "" \
    --appendonly yes --appendfsync everysec --dir "$data" --logfile "$data/server.log"
  for _ in $(seq 1 30); do valkey_answers && return 0; sleep 0.5; done
  say "Valkey/Redis does not answer on 127.0.0.1:$VALKEY_PORT"; return 1
}

# redis-server and redis-cli (or Valkey's), for the cluster tests
# (system-tests/tests/faults/cluster.rs), which start clusters of their own on free
# loopback ports.
ensure_cluster_tools() {
  local packages=()
  if ! command -v valkey-server >/dev/null 2>&1 && ! command -v redis-server >/dev/null 2>&1; then
    packages+=(redis-server)
  fi
  if ! command -v valkey-cli >/dev/null 2>&1 && ! command -v redis-cli >/dev/null 2>&1; then
    packages+=(redis-tools)
  fi
  [ "${#packages[@]}" -eq 0 ] || apt_install "${packages[@]}"
}

# faketime, for the test of api replicas with wrong clocks
# (system-tests/tests/faults/clocks.rs).
ensure_faketime() {
  command -v faketime >/dev/null 2>&1 || apt_install faketime
}

# Chromium, for the dashboard's browser test (api/tests/api/dashboard.rs).
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return 0
  fi
  apt_install chromium
  command -v chromium >/dev/null 2>&1 || { say "chromium is still missing"; return 1; }
}

# wrk, nginx and redis-benchmark, for the box's own limits in scripts/bench.
ensure_bench_tools() {
  local missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v redis-benchmark >/dev/null 2>&1 || command -v valkey-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
  [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
}

ensure_services() {
  ensure_postgres
  ensure_valkey
}
