"""The flake hunt of issue 11: the operator cluster tests and the fault tests N times in a row
while a CPU hog keeps every core busy, then the failures of each run.

    uv run --frozen python -m tests.faults.loaded --runs 10            # or scripts/loaded-faults.sh
    uv run --frozen python -m tests.faults.loaded --runs 3 -- -k kills  # extra pytest arguments

The hog is one busy-looping process per core (`--hogs`), niced (`--nice`, default 10, so people
sharing the machine keep working; `--nice 0` competes as hard as the tests). It is stopped however
the runs end. Exit status 1 when any run had a failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("tests/operator/test_operator_cluster.py", "tests/faults")


@dataclass(frozen=True)
class RunResult:
    run: int
    seconds: float
    passed: int
    failed: list[str]  # test ids that failed or errored
    skipped: int
    exit_code: int


def junit_outcomes(path: Path) -> tuple[int, list[str], int]:
    """(passed, failed ids, skipped) from a pytest JUnit XML report."""
    passed, failed, skipped = 0, [], 0
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(test_id)
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


@contextmanager
def cpu_hog(processes: int, niceness: int) -> Iterator[list[int]]:
    """`processes` busy loops, stopped (SIGKILL) on exit whatever happened."""
    hogs = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            preexec_fn=lambda: os.nice(niceness),
        )
        for _ in range(processes)
    ]
    try:
        yield [h.pid for h in hogs]
    finally:
        for hog in hogs:
            hog.send_signal(signal.SIGKILL)
            hog.wait()


def run_once(run: int, pytest_args: Sequence[str], report_dir: Path) -> RunResult:
    report = report_dir / f"run-{run}.xml"
    began = time.monotonic()
    code = subprocess.call(
        [
            sys.executable, "-m", "pytest", *TARGETS, "-q", "-p", "no:cacheprovider",
            f"--junitxml={report}", *pytest_args,
        ],
        cwd=REPO,
    )
    seconds = time.monotonic() - began
    if not report.exists():  # pytest died before writing its report
        return RunResult(run, seconds, 0, [f"pytest exited {code} without a report"], 0, code)
    passed, failed, skipped = junit_outcomes(report)
    return RunResult(run, seconds, passed, failed, skipped, code)


def run_lines(r: RunResult) -> list[str]:
    return [
        f"  run {r.run}: {r.passed} passed, {len(r.failed)} failed, {r.skipped} skipped "
        f"in {r.seconds:.0f} s (exit {r.exit_code})",
        *(f"      FAILED {test_id}" for test_id in r.failed),
    ]


def summary(results: Sequence[RunResult]) -> str:
    lines = ["", "loaded runs:"]
    for r in results:
        lines += run_lines(r)
    flaky = sum(1 for r in results if r.failed or r.exit_code != 0)
    lines.append(f"runs with failures: {flaky} of {len(results)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="videoflix-loaded-") as tmp, cpu_hog(
        args.hogs, args.nice
    ) as pids:
        sys.stderr.write(f"CPU hog: {len(pids)} busy loops (nice {args.nice}): {pids}\n")
        try:
            for run in range(1, args.runs + 1):
                result = run_once(run, args.pytest_args, Path(tmp))
                results.append(result)
                sys.stderr.write("\n".join(run_lines(result)) + "\n")
        except KeyboardInterrupt:
            sys.stderr.write("interrupted: the summary covers the finished runs\n")
    sys.stdout.write(summary(results) + "\n")
    return 1 if any(r.failed or r.exit_code != 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
