#!/usr/bin/env bash
# Browser tests: the whole system (the monitor binary) on the servers of
# `./dev test`, with a NATS and a Redis of its own, a fresh database and
# InfluxDB database, and a target website; the dashboard is driven in
# headless Chromium (Debian's) by playwright-core. Run by `./dev test`.
set -euo pipefail
cd "$(dirname "$0")"
source ./system.sh

./deps.sh
start_system e2e
target_port=$(free_port)
python3 target.py "$target_port" & pids+=($!)

say "browser tests"
export ADMIN_TOKEN="$admin_token" BASE_URL="http://127.0.0.1:$api_port" TARGET_URL="http://127.0.0.1:$target_port"
if ! node dashboard.mjs; then
  tail -n 40 "$work/monitor.log" >&2
  exit 1
fi
# Many websites (MANY_WEBSITES, default 10000) on the same system, after
# the first script, which expects its own websites on the first page.
say "browser tests with many websites"
if ! node many.mjs; then
  tail -n 40 "$work/monitor.log" >&2
  exit 1
fi
