#!/usr/bin/env bash
# What the browser scripts need: Debian's Chromium and playwright-core
# (e2e/node_modules). Run by e2e/run.sh and ./dev readbench.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing chromium (apt)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/e2e-apt.log 2>&1 \
    || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/e2e-apt.log 2>&1; } \
    || { tail -n 20 /tmp/e2e-apt.log >&2; exit 1; }
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >/tmp/e2e-npm.log 2>&1 || { tail -n 20 /tmp/e2e-npm.log >&2; exit 1; }
fi
