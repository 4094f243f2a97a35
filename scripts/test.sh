#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs them: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy
.venv/bin/python -m ruff check src tests bench
exec .venv/bin/python -m pytest "$@"
