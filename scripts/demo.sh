#!/usr/bin/env bash
# Installs P2C2R and runs the local network: a coordinator, two peers and a gamer. Args go to `p2c2r demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/p2c2r demo "$@"
