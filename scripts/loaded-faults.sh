#!/usr/bin/env bash
# Issue 11's flake hunt: the operator cluster tests and tests/faults N times in a row under a CPU
# hog on every core, then the failures per run. Usage: scripts/loaded-faults.sh [--runs N] [-- pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
exec uv run --frozen python -m tests.faults.loaded "$@"
