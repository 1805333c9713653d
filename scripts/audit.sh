#!/usr/bin/env bash
# Known vulnerabilities in the locked dependencies (uv.lock, every package and group), looked up
# with pip-audit: PyPI's advisory data first, else OSV.
#   exit 1: a known vulnerability (not in IGNORED below) in a locked version; upgrade it with
#           `uv lock --upgrade-package NAME`, or add an explicit ignore with the reason.
#   exit 0: nothing known, or no advisory database could be reached (said loudly: then the lock
#           was NOT audited; an offline run must not fail the build).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"

# Ignored advisories, one "ID  reason" a line. None so far.
IGNORED=(
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Our workspace packages are not on PyPI; everything else is pinned by the lock.
uv export --frozen --all-packages --all-groups --format requirements-txt --no-hashes \
    --no-emit-workspace --quiet > "$work/requirements.txt"

ignore_args=()
for entry in "${IGNORED[@]}"; do
    ignore_args+=(--ignore-vuln "${entry%% *}")
done

for service in pypi osv; do
    set +e
    uv run --frozen pip-audit -r "$work/requirements.txt" --no-deps --disable-pip \
        --vulnerability-service "$service" --timeout 20 --progress-spinner off \
        --format json --output "$work/$service.json" "${ignore_args[@]}" \
        > "$work/$service.log" 2>&1
    set -e
    # The verdict is the report's, not the exit status: an unreachable database makes pip-audit
    # either crash (no report) or skip every package as "not found" and exit 0.
    set +e
    uv run --frozen python - "$work/$service.json" "$service" <<'EOF'
import json, sys
from pathlib import Path

path, service = Path(sys.argv[1]), sys.argv[2]
if not path.is_file() or not path.read_text().strip():
    sys.exit(3)  # no report: pip-audit could not reach the service (its error is in the log)
deps = json.loads(path.read_text())["dependencies"]
audited = [d for d in deps if "skip_reason" not in d]
if not audited:
    print(f"audit ({service}): none of the {len(deps)} packages was found", file=sys.stderr)
    sys.exit(3)
found = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]
for name, version, vuln in found:
    fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
    print(f"VULNERABLE {name} {version}: {vuln['id']} (fixed in: {fixes})", file=sys.stderr)
skipped = len(deps) - len(audited)
print(
    f"audit ({service}): {len(audited)} locked packages checked, {len(found)} known"
    f" vulnerabilities, {skipped} not found in the database",
    file=sys.stderr,
)
sys.exit(1 if found else 0)
EOF
    verdict=$?
    set -e
    case $verdict in
        0) exit 0 ;;
        1) echo "audit: known vulnerabilities in uv.lock (see above)" >&2; exit 1 ;;
        *) echo "audit: the $service advisory database is not reachable" \
               "$(grep -Eo '[A-Za-z]+Error' "$work/$service.log" | tail -1)" >&2 ;;
    esac
done
echo "audit: WARNING: no vulnerability database reachable (offline?): the lock was NOT audited" >&2
exit 0
