#!/usr/bin/env bash
# Browser tests: the whole system (the monitor binary) on the servers of
# `./dev test`, with a NATS and a Redis of its own, a fresh database and
# InfluxDB database, and a target website; the dashboard is driven in
# headless Chromium (Debian's) by playwright-core. Run by `./dev test`.
set -euo pipefail
cd "$(dirname "$0")"
say() { printf '==> %s\n' "$*" >&2; }

: "${TEST_DATABASE_URL:?run through ./dev test}" "${TEST_INFLUXDB_URL:?run through ./dev test}"
if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/e2e-apt.log 2>&1 \
    || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/e2e-apt.log 2>&1; } \
    || { tail -n 20 /tmp/e2e-apt.log >&2; exit 1; }
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >/tmp/e2e-npm.log 2>&1 || { tail -n 20 /tmp/e2e-npm.log >&2; exit 1; }
fi
cargo build --quiet --bin monitor
monitor_bin="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}/debug/monitor"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
monitor_pid=""
running() { # a child that has not exited (an exited one stays a zombie until waited for)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
# The monitor first (SIGTERM, up to 10 s, then SIGKILL), so it never
# outlives the servers it uses; then those servers.
cleanup() {
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
  rm -rf "$work"
}
trap cleanup EXIT

nats_port=$(free_port); redis_port=$(free_port); api_port=$(free_port); target_port=$(free_port)
"${NATS_SERVER_BIN:-nats-server}" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 & pids+=($!)
"${REDIS_SERVER_BIN:-redis-server}" --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no >"$work/redis.log" 2>&1 & pids+=($!)
python3 target.py "$target_port" & pids+=($!)
db="e2e_$(date +%s)_$$"
admin_token="wm_e2e_$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
psql "$TEST_DATABASE_URL" -qc "create database $db" >/dev/null

NATS_URL="nats://127.0.0.1:$nats_port" DATABASE_URL="${TEST_DATABASE_URL%/*}/$db" \
REDIS_URL="redis://127.0.0.1:$redis_port" INFLUXDB_URL="$TEST_INFLUXDB_URL" INFLUXDB_BUCKET="$db" \
API_PORT="$api_port" ALLOW_PRIVATE_TARGETS=true SMTP_PORT=1 RUST_LOG=warn ADMIN_TOKEN="$admin_token" \
  "$monitor_bin" >"$work/monitor.log" 2>&1 & monitor_pid=$!

for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$api_port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$api_port/health" >/dev/null || { tail -n 40 "$work/monitor.log" >&2; exit 1; }

say "browser tests"
if ! ADMIN_TOKEN="$admin_token" BASE_URL="http://127.0.0.1:$api_port" TARGET_URL="http://127.0.0.1:$target_port" node dashboard.mjs; then
  tail -n 40 "$work/monitor.log" >&2
  exit 1
fi
