#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, static checks, then every test against real servers.
# Extra arguments go to pytest (e.g. scripts/test.sh api/tests -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"

echo "== static checks" >&2
uv run --frozen ruff check .
uv run --frozen mypy core/src api/src operator/src transcoder-image/src
uv run --frozen lint-imports
uv run --frozen python charts/sync.py --check
uv run --frozen python -m videoflix_core.crdgen --check
scripts/audit.sh  # known vulnerabilities in uv.lock; warns (passes) when offline

echo "== tests" >&2
uv run --frozen pytest --durations=25 "$@"
