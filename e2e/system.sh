# The whole system for the scripts in e2e/ (sourced, not run): the monitor
# binary on the servers of `./dev test`, with a NATS and a Redis of its
# own, a fresh Postgres and InfluxDB database, and an admin token.
#
#   source system.sh; start_system <database prefix>
#
# sets `work` (a temporary directory), `api_port`, `admin_token`, and stops
# everything on exit: the monitor first (SIGTERM, up to 10 s, then
# SIGKILL), so it never outlives the servers it uses; then the processes in
# `pids` (a script may add its own); then the databases are dropped.

say() { printf '==> %s\n' "$*" >&2; }
: "${TEST_DATABASE_URL:?run through ./dev test}" "${TEST_INFLUXDB_URL:?run through ./dev test}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
monitor_pid=""
db=""
running() { # a child that has not exited (an exited one stays a zombie until waited for)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
stop_system() {
  local pid _
  if [ -n "$monitor_pid" ]; then
    kill -TERM "$monitor_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do running "$monitor_pid" || break; sleep 0.1; done
    if running "$monitor_pid"; then
      say "the monitor did not stop within 10 s of SIGTERM; killing it"
      kill -KILL "$monitor_pid" 2>/dev/null || true
    fi
    wait "$monitor_pid" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$db" ]; then
    psql "$TEST_DATABASE_URL" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
    curl -sf -XPOST "$TEST_INFLUXDB_URL/query" --data-urlencode "q=DROP DATABASE \"$db\"" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap stop_system EXIT

# Private targets are allowed: the scripts' targets are on loopback, and
# every URL the schema admits must be accepted (the fuzzer cannot know which
# names resolve where); checks of generated websites fail harmlessly.
start_system() { # database prefix
  cargo build --quiet --bin monitor
  # A copy: another build could replace the binary while this run uses it.
  cp "${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}/debug/monitor" "$work/monitor"
  local nats_port redis_port
  nats_port=$(free_port); redis_port=$(free_port); api_port=$(free_port)
  "${NATS_SERVER_BIN:-nats-server}" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 & pids+=($!)
  "${REDIS_SERVER_BIN:-redis-server}" --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no >"$work/redis.log" 2>&1 & pids+=($!)
  db="${1}_$(date +%s)_$$"
  admin_token="wm_${1}_$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
  psql "$TEST_DATABASE_URL" -qc "create database $db" >/dev/null

  NATS_URL="nats://127.0.0.1:$nats_port" DATABASE_URL="${TEST_DATABASE_URL%/*}/$db" \
  REDIS_URL="redis://127.0.0.1:$redis_port" INFLUXDB_URL="$TEST_INFLUXDB_URL" INFLUXDB_BUCKET="$db" \
  API_PORT="$api_port" ALLOW_PRIVATE_TARGETS=true SMTP_PORT=1 RUST_LOG=warn ADMIN_TOKEN="$admin_token" \
    "$work/monitor" >"$work/monitor.log" 2>&1 & monitor_pid=$!

  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$api_port/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -n 40 "$work/monitor.log" >&2
  say "the monitor did not answer /health within 30 s"
  return 1
}
