"""The operator SIGKILLed over and over while it runs ≥ 30 real (tiny) transcodes and deletes.

Kills come from the test-only crash hook (`VIDEOFLIX_FAULT_CRASH_AT`, exactly at the harmful
steps: after a Job create, inside and after the database write, before the status patch, during
cleanup) and from random external SIGKILLs; the operator is restarted after each. Afterwards:
every video terminal and correct (row == CR), no step ran twice, no orphaned or stale Job, every
video's objects exactly those of an undisturbed reference transcode, deleted videos fully gone.

Real control plane, local kubelet running the real transcoder, MinIO, PostgreSQL. The seed is
printed; `VIDEOFLIX_FAULT_SEED=<n>` replays a run.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from videoflix_core import storage
from videoflix_core.db.models import Video
from videoflix_core.transcode import LABEL_SPEC_HASH, LABEL_VIDEO_ID
from videoflix_operator import faults
from videoflix_operator.plan import step_key

from tests.operator.conftest import Platform, make_platform, sources  # noqa: F401  (fixtures)
from tests.operator.test_operator_cluster import assert_status_and_row_agree

pytestmark = [pytest.mark.faults, pytest.mark.cluster]

TRANSCODES = 29  # kept to the end (the reference is one more)
DELETES = 4  # deleted while the kills go on (the cleanup crash points)
MIN_KILLS = 20
STARTED = "Started the Videoflix operator"
# `kopf run` as the fixture runs it, but imported ahead and started by a line on stdin: the next
# operator is ready the moment the last one dies, so ≥ 20 restarts cost no Python imports.
LAUNCH = (
    "import sys, kopf.cli, videoflix_operator.main\n"
    "sys.stdin.readline()\n"
    "kopf.cli.main(args=sys.argv[1:], prog_name='kopf')\n"
)
CLEANUP_POINTS = (faults.CLEANUP_AFTER_JOBS_DELETED, faults.CLEANUP_AFTER_STORAGE)
TRANSCODE_POINTS = sorted(faults.POINTS - set(CLEANUP_POINTS) - {faults.AFTER_PREFIX_DELETE})


def relative_keys(p: Platform, video_id: int, spec_hash: str) -> set[str]:
    """A video's object keys without its id and spec hash, to compare videos with each other."""
    prefix = storage.video_prefix(video_id)
    return {k[len(prefix) :].replace(spec_hash, "<hash>") for k in p.keys(video_id)}


def phase(cr: dict[str, Any] | None) -> str | None:
    return ((cr or {}).get("status") or {}).get("phase")


def fits(crash_at: str | None, points: list[str] | tuple[str, ...] | None) -> bool:
    return crash_at is None or (points is not None and crash_at.split(":")[0] in points)


class Killer:
    """Starts the operator armed with a random crash point (or none), kills it if it lives on."""

    def __init__(self, p: Platform, rng: random.Random) -> None:
        self.p, self.rng = p, rng
        self.hooked: Counter[str] = Counter()  # crash-hook exits, by point
        self.external = 0  # SIGKILLs from the test
        self.spare: tuple[subprocess.Popen[bytes], str | None] | None = None

    def _spawn(self, crash_at: str | None) -> tuple[subprocess.Popen[bytes], str | None]:
        op = self.p.operator
        env = {k: v for k, v in op.env.items() if k != faults.ENV}
        if crash_at:
            env[faults.ENV] = crash_at
        with op.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable, "-c", LAUNCH, "run", "-m", "videoflix_operator.main",
                    "--namespace", op.namespace, "--standalone",
                    "--liveness", f"http://127.0.0.1:{op.liveness_port}/healthz",
                ],
                env=env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
            )
        return proc, crash_at

    def _start(self, points: list[str] | tuple[str, ...] | None) -> str | None:
        """Start the spare if its arming fits `points` (None: unarmed only), else a new one;
        then spawn the next spare. Returns the started one's arming."""
        op = self.p.operator
        if self.spare is not None and fits(self.spare[1], points):
            proc, crash_at = self.spare
        else:
            self.close()
            proc, crash_at = self._spawn(self._arming(points) if points else None)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        op.proc = proc  # the fixture stops it at the end, OperatorProcess.kill() kills it
        self.spare = self._spawn(self._arming(points)) if points else None
        return crash_at

    def _arming(self, points: list[str] | tuple[str, ...]) -> str | None:
        if self.rng.random() < 0.65:
            return f"{self.rng.choice(points)}:{self.rng.randint(1, 3)}"
        return None

    def close(self) -> None:
        if self.spare is not None:
            self.spare[0].kill()
            self.spare[0].wait()
            self.spare = None

    @property
    def kills(self) -> int:
        return self.external + sum(self.hooked.values())

    def epoch(self, points: list[str] | tuple[str, ...]) -> None:
        """One operator life: a random time after its startup, unless the hook ends it first
        (an armed one gets longer, for the work to reach its point)."""
        op = self.p.operator
        starts = op.log().count(STARTED)
        crash_at = self._start(points)
        proc = op.proc
        assert proc is not None
        # Killing it while Python imports would only test the import: wait for the startup.
        deadline = time.monotonic() + 180
        while op.log().count(STARTED) == starts and proc.poll() is None:
            assert time.monotonic() < deadline, f"the operator did not start:\n{op.log()[-3000:]}"
            time.sleep(0.1)
        life = self.rng.uniform(2.0, 8.0) if crash_at else self.rng.uniform(0.3, 2.0)
        try:
            proc.wait(life)
        except subprocess.TimeoutExpired:
            op.kill()
            self.external += 1
            return
        if proc.returncode != faults.EXIT_CODE:
            raise AssertionError(f"the operator died on its own:\n{op.log()[-4000:]}")
        assert crash_at is not None, "exit code 70 without an armed hook"
        self.hooked[crash_at.split(":")[0]] += 1

    def calm(self) -> None:
        """Start an operator that is left alone (the spare, if it is unarmed)."""
        self._start(None)


def test_operator_killed_at_random_points_loses_and_duplicates_nothing(
    make_platform: Any,  # noqa: F811
    sources: dict[str, Path],  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    seed = int(os.environ.get("VIDEOFLIX_FAULT_SEED") or time.time_ns() % 1_000_000)
    sys.stderr.write(f"operator kill test seed: {seed}\n")
    rng = random.Random(seed)
    p: Platform = make_platform(max_running_jobs="4")
    tiny = sources["tiny"]
    extra = {"renditions": ["120p"], "thumbnail": False}

    # The reference: one undisturbed transcode of the same source.
    ref_vid, ref_name = p.transcode(tiny, **extra)
    ref = p.wait_phase(ref_name, "Succeeded", timeout=90)
    expected = relative_keys(p, ref_vid, ref["status"]["specHash"])
    assert any(k.startswith("120p/") for k in expected), expected
    p.operator.kill()

    killer = Killer(p, rng)
    request.addfinalizer(killer.close)
    kept: list[tuple[int, str]] = []
    deleted: list[tuple[int, str]] = []
    submitted = 0
    began = time.monotonic()
    while killer.kills < MIN_KILLS or submitted < TRANSCODES + DELETES:
        assert time.monotonic() - began < 420, f"kill phase too slow: {killer.kills} kills"
        # A few new transcodes per epoch, so kills land in every phase of their lives.
        for _ in range(min(2, TRANSCODES + DELETES - submitted)):
            kept.append(p.transcode(tiny, **extra))
            submitted += 1
        points: list[str] | tuple[str, ...] = TRANSCODE_POINTS
        if len(deleted) < DELETES and len(kept) > 10:
            # The API's delete: the row first, then the CR (whose finalizer cleans up).
            vid, name = kept.pop(rng.randrange(len(kept) - 3))
            with Session(p.engine) as s:
                s.delete(s.get_one(Video, vid))
                s.commit()
            p.kube.client.delete(p.path("vt", name))
            deleted.append((vid, name))
            points = CLEANUP_POINTS
        killer.epoch(points)

    # Left alone, everything converges.
    killer.calm()
    deadline = time.monotonic() + 240
    pending = {name for _, name in kept}
    while pending or any(p.cr(name) for _, name in deleted):
        assert time.monotonic() < deadline, (
            f"not terminal: {sorted(pending)}; deleted CRs left: "
            f"{[n for _, n in deleted if p.cr(n)]}\n{p.operator.log()[-3000:]}"
        )
        assert p.operator.proc is not None and p.operator.proc.poll() is None, p.operator.log()
        pending = {n for n in pending if phase(p.cr(n)) not in ("Succeeded", "Failed")}
        time.sleep(0.5)

    crs = {name: p.cr(name) for _, name in kept}
    jobs = p.jobs()
    by_video: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        by_video.setdefault(job["metadata"]["labels"][LABEL_VIDEO_ID], []).append(job)
    leaked: dict[int, set[str]] = {}
    for vid, name in kept:
        cr = crs[name]
        assert cr is not None and phase(cr) == "Succeeded", (name, (cr or {}).get("status"))
        assert_status_and_row_agree(p, cr, vid)
        spec_hash = cr["status"]["specHash"]
        own = by_video.pop(str(vid), [])
        steps = Counter(step_key(j) for j in own)
        # Exactly one Job per step of this spec, each owned by the live CR, each run once.
        assert steps == Counter({"probe": 1, "rendition/120p": 1}), (name, steps)
        for job in own:
            assert job["metadata"]["labels"][LABEL_SPEC_HASH] == spec_hash
            assert job["metadata"]["ownerReferences"][0]["uid"] == cr["metadata"]["uid"]
            assert job["status"].get("succeeded") == 1 and not job["status"].get("failed")
            assert len(p.kube.job_pods(p.namespace, job["metadata"]["name"])) == 1, job
        got = relative_keys(p, vid, spec_hash)
        if got != expected:
            leaked[vid] = got ^ expected
    assert not leaked, f"objects differ from the reference: {leaked}"
    for vid, name in deleted:
        assert p.cr(name) is None
        assert str(vid) not in by_video, f"Jobs left of deleted {name}"
        assert p.keys(vid) == [], f"objects left of deleted {name}"
    # Only the reference's own Jobs remain unaccounted for: no orphan anywhere.
    assert set(by_video) <= {str(ref_vid)}, f"orphaned Jobs: {sorted(by_video)}"
    sys.stderr.write(
        f"kills: {killer.kills} ({killer.external} external SIGKILL, hook: "
        f"{dict(killer.hooked)}); transcodes: {len(kept) + 1} kept, {len(deleted)} deleted; "
        f"{time.monotonic() - began:.0f} s\n"
    )
    assert killer.kills >= MIN_KILLS
