"""Embedded mode killed mid-transcode (issue 11): the real `python -m videoflix_api.embedded`
process, its real transcoder subprocesses and FFmpeg, on loopback.

Fault: SIGKILL of the server while a rendition encodes (no shutdown, nothing stops the step).
Invariant after a restart: the video completes `ready` with every planned rendition; the step that
was running when the server died finished on its own, stored its result, and that result is taken
from storage (the operator's rule, `videoflix_core.results`) instead of encoding it again; no
transcoder process is left behind.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.embedded.server import EmbeddedServer, make_video
from tests.embedded.test_cli import _processes_under
from tests.fixtures.procs import wait_until

pytestmark = [pytest.mark.faults]


def encoding(data: Path) -> bool:
    """A rendition's transcoder process runs now (its working directory is the media root)."""
    for pid in _processes_under(data):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"videoflix_transcoder" in argv and b"rendition" in argv:
            return True
    return False


def test_sigkill_mid_transcode_then_restart_completes_the_video(tmp_path: Path) -> None:
    source = make_video(tmp_path / "clip.mp4", seconds=4, width=640, height=360)
    data = tmp_path / "data"
    server = EmbeddedServer(data, args=["--workers", "1"]).start()
    with server.client() as client:
        server.login(client)
        video_id = server.upload(client, source, "Killed")["id"]
        deadline = time.monotonic() + 60
        # The probe is done and a rendition is encoding (one worker: one step at a time).
        while (video := server.video(client, video_id))["progress"] < 10 or not encoding(data):
            assert video["processing_state"] != "ready", "finished before the kill"
            assert time.monotonic() < deadline, video
            time.sleep(0.05)
    assert server.proc is not None
    server.proc.kill()  # SIGKILL
    server.proc.wait(10)
    server.proc = None
    killed_at = time.monotonic()
    # Nobody stops the orphaned step: it finishes (and stores its result) or fails by itself.
    wait_until(lambda: _processes_under(data) == [], "the orphaned step to end", timeout=60)
    media = data / "media"
    stored = {p.stem for p in media.glob(f"videos/{video_id}/results/*/*.json")}
    assert "probe" in stored and any(n.startswith("rendition-") for n in stored), stored
    state = json.loads((data / "transcodes" / f"{video_id}.json").read_text())
    recorded = {step.replace("/", "-") for step in state["steps"]}
    unrecorded = stored - recorded  # finished by the orphan after the server died

    log_before = len(server.log())
    again = EmbeddedServer(data, port=server.port).start()
    again.admin_email, again.admin_password = server.admin_email, server.admin_password
    try:
        with again.client() as client:
            again.login(client)
            done = again.wait_final(client, video_id, timeout=120)
    finally:
        again.stop()
    to_ready = time.monotonic() - killed_at
    assert done["processing_state"] == "ready", done["processing_error"]
    assert sorted(done["converted_files"]) == ["120p", "360p"]
    for name, rendition in done["converted_files"].items():
        file = media / f"videos/{video_id}/{name}/video.mp4"
        assert file.stat().st_size == rendition["bytes"]
    assert _processes_under(data) == []

    log = again.log()[log_before:]
    recovered = log.count("Recovered a step's result from storage")
    # The step the orphan finished is taken from storage, not encoded a second time.
    assert recovered == len(unrecorded) >= 1, (unrecorded, log[-3000:])
    results = {
        p.name: json.loads(p.read_text())
        for p in media.glob(f"videos/{video_id}/results/*/*.json")
    }
    assert set(results) >= {"probe.json", "rendition-120p.json", "rendition-360p.json"}
    sys.stdout.write(
        f"\nembedded SIGKILL: {recovered} step(s) recovered from storage after the restart, "
        f"{len(stored)} results stored by the kill's end; ready {to_ready:.1f} s after the kill\n"
    )
