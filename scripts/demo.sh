#!/usr/bin/env bash
# The whole platform on this machine, no cluster: API + web page on http://127.0.0.1:8000, SQLite, local
# storage, local transcodes, and a generated demo video. First run installs what it needs (FFmpeg, uv, the
# locked Python environment); the dev admin account is printed once, on the first start.
# Usage: scripts/demo.sh [options of `python -m videoflix_api.embedded`, e.g. --port 8080 --data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh --runtime-only
export PATH="$HOME/.local/bin:$PATH"

exec uv run --frozen python -m videoflix_api.embedded --demo "$@"
