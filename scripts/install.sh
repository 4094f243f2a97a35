#!/usr/bin/env bash
# Installs P2C2R into ./.venv on a fresh machine. Usage: scripts/install.sh [--dev]
# --dev adds the test tools and, where we are root, the Debian packages the tests use (chromium, iproute2).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--dev" ]; then
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing Debian packages: ${need[*]}"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
      echo "note: missing ${need[*]} (not root or no apt-get); the tests that need them will say so" >&2
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e '.[dev]'
else
  .venv/bin/python -m pip install -q -e .
fi
