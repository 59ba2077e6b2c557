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

# iptables and ip6tables, for the off-host guard (offhost_guard_start),
# installed before it starts since the guard refuses the package mirrors.
ensure_iptables() {
  { command -v iptables && command -v ip6tables; } >/dev/null 2>&1 || apt_install iptables
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

# promtool (Debian's prometheus package), for the metrics and alert-rule
# checks (system-tests/tests/faults/deployment.rs).
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  apt_install prometheus
  command -v promtool >/dev/null 2>&1 || { say "promtool is still missing"; return 1; }
}

# A venv under the target directory (git-ignored) with the pinned Python
# packages of $2 (a requirements file): $1 names it. Prints its bin folder.
ensure_venv() {
  local venv="${CARGO_TARGET_DIR:-target}/$1" requirements=$2
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --dry-run \
      --no-index -r "$requirements" >/dev/null 2>&1; then
    say "installing $(tr '\n' ' ' <"$requirements")from PyPI into $venv" 
    if [ ! -x "$venv/bin/pip" ] && ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  fi
  (cd "$venv/bin" && pwd)
}

# What scripts/test-examples needs: jq (the examples use it) and the venv of
# its runner (httpx for the stack, msgpack for the MessagePack example).
# Prints the venv's bin folder.
ensure_examples_tools() {
  command -v jq >/dev/null 2>&1 || apt_install jq
  ensure_venv examples-venv scripts/examples-requirements.txt
}

# The webhook receiver's standardwebhooks package (testkit::standard_webhooks).
ensure_standard_webhooks() {
  ensure_venv standard-webhooks-venv testkit/python/requirements.txt >/dev/null
}

# The OpenTelemetry SDK of api/tests/api/otel_sdk.rs, in the venv that test
# uses (system-tests/otel/.venv), installed before the off-host guard is on.
ensure_otel_sdk() {
  local venv=system-tests/otel/.venv
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >/dev/null 2>&1 ||
    { rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r system-tests/otel/requirements.txt >&2
}

# The off-host guard: the test suite must reach nothing beyond this machine
# (loopback only), whatever process tries (a test, an api or pipeline it
# starts, Chromium, Python, schemathesis). offhost_guard_start puts this
# shell, and so every process it starts from then on, in a cgroup of its
# own, and has iptables and ip6tables refuse every packet from that cgroup
# that does not leave through loopback, at once (TCP reset, ICMP
# unreachable: a connect fails fast rather than hanging) and recording each
# destination (the `recent` match, /proc/net/xt_recent/<name>). Tests see
# the list through FLAGMETER_TEST_OFFHOST_LIST (testkit::offhost fails the
# test that finds an address in it); offhost_guard_check fails the run
# naming every address. The two TEST-NET-2 canaries are the ones the
# suite's own proof of the guard (system-tests offhost.rs) reaches for;
# they are not held against it. Name lookups (port 53, to the machine's
# resolver) pass: they carry no test traffic, and whatever address a lookup
# returns is refused like any other beyond loopback. (The first guarded run
# found lookups from the api test binary; which test makes them is still to
# be found.)
#
# It needs root (or sudo), a cgroup2 mount and iptables with the cgroup and
# recent matches. FLAGMETER_OFFHOST_GUARD: `auto` (default) installs it when
# it can and says loudly when it cannot; `required` fails instead; `off`
# skips it.
OFFHOST_CANARIES="198.51.100.7 198.51.100.8"

offhost_guard_start() {
  local mode="${FLAGMETER_OFFHOST_GUARD:-auto}"
  [ "$mode" = off ] && { say "off-host guard: off (FLAGMETER_OFFHOST_GUARD=off)"; return 0; }
  if ! offhost_guard_install; then
    offhost_guard_remove
    if [ "$mode" = required ]; then
      say "off-host guard: cannot be installed (needs root, cgroup2, iptables with the cgroup and recent matches)"
      return 1
    fi
    say "WARNING: off-host guard not installed (needs root, cgroup2, iptables with the cgroup and recent matches): nothing checks that the suite stays on this machine"
    return 0
  fi
  trap offhost_guard_remove EXIT
  say "off-host guard: on (cgroup $OFFHOST_NAME; anything but loopback is refused and recorded)"
}

offhost_guard_install() {
  [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null || return 1
  command -v iptables >/dev/null 2>&1 && command -v ip6tables >/dev/null 2>&1 || return 1
  OFFHOST_CGROUP_ROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
  [ -n "$OFFHOST_CGROUP_ROOT" ] || return 1
  OFFHOST_NAME="flagmeter-suite-$$"
  OFFHOST_CHAIN="FLAGMETER_SUITE_$$"
  as_root mkdir -p "$OFFHOST_CGROUP_ROOT/$OFFHOST_NAME" || return 1
  local ipt
  for ipt in iptables ip6tables; do
    as_root "$ipt" -N "$OFFHOST_CHAIN" &&
      as_root "$ipt" -A "$OFFHOST_CHAIN" -o lo -j RETURN &&
      as_root "$ipt" -A "$OFFHOST_CHAIN" -p udp --dport 53 -j RETURN &&
      as_root "$ipt" -A "$OFFHOST_CHAIN" -p tcp --dport 53 -j RETURN &&
      as_root "$ipt" -A "$OFFHOST_CHAIN" -m recent --name "$OFFHOST_NAME" --rdest --set &&
      as_root "$ipt" -A "$OFFHOST_CHAIN" -p tcp -j REJECT --reject-with tcp-reset &&
      as_root "$ipt" -A "$OFFHOST_CHAIN" -j REJECT &&
      as_root "$ipt" -I OUTPUT 1 -m cgroup --path "$OFFHOST_NAME" -j "$OFFHOST_CHAIN" || return 1
  done
  echo "$$" | as_root tee "$OFFHOST_CGROUP_ROOT/$OFFHOST_NAME/cgroup.procs" >/dev/null || return 1
  # Prove it before trusting it: a connection from inside is refused at
  # once and recorded; then start from an empty list.
  local list="/proc/net/xt_recent/$OFFHOST_NAME"
  python3 -c '
import socket, sys
s = socket.socket()
s.settimeout(10)
try:
    s.connect(("203.0.113.1", 9))
except ConnectionRefusedError:
    sys.exit(0)
sys.exit(1)' || return 1
  as_root grep -q '^src=203\.0\.113\.1 ' "$list" || return 1
  echo / | as_root tee "$list" >/dev/null || return 1
  export FLAGMETER_TEST_OFFHOST_LIST="$list"
}

# Fails, naming them, if any process of the suite tried to reach an address
# beyond this machine (the canaries aside).
offhost_guard_check() {
  [ -n "${FLAGMETER_TEST_OFFHOST_LIST:-}" ] || return 0
  local tried canary
  tried=$(as_root cat "$FLAGMETER_TEST_OFFHOST_LIST" | sed -n 's/^src=\([^ ]*\) .*/\1/p')
  for canary in $OFFHOST_CANARIES; do
    tried=$(printf '%s\n' "$tried" | grep -vx "$canary" || true)
  done
  if [ -n "$tried" ]; then
    say "the test suite tried to reach beyond this machine (refused): $(echo $tried)"
    return 1
  fi
  say "off-host guard: the suite reached nothing beyond this machine"
}

offhost_guard_remove() {
  [ -n "${OFFHOST_NAME:-}" ] || return 0
  local ipt
  echo "$$" | as_root tee "$OFFHOST_CGROUP_ROOT/cgroup.procs" >/dev/null 2>&1 || true
  for ipt in iptables ip6tables; do
    as_root "$ipt" -D OUTPUT -m cgroup --path "$OFFHOST_NAME" -j "$OFFHOST_CHAIN" 2>/dev/null || true
    as_root "$ipt" -F "$OFFHOST_CHAIN" 2>/dev/null || true
    as_root "$ipt" -X "$OFFHOST_CHAIN" 2>/dev/null || true
  done
  # Processes still exiting keep the cgroup a moment.
  for _ in $(seq 1 20); do
    as_root rmdir "$OFFHOST_CGROUP_ROOT/$OFFHOST_NAME" 2>/dev/null && break
    sleep 0.5
  done
  OFFHOST_NAME=
  unset FLAGMETER_TEST_OFFHOST_LIST
}
