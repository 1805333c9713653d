"""A rendition plays progressively, with seeking, in a real <video> element (Debian's Chromium),
loaded from a presigned MinIO URL exactly as the API hands it to the frontend."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_rendition_plays_and_seeks_in_chromium(
    minio_server: Any, s3_bucket: str, sources: Any, tx: Any, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    client = minio_server.client()
    client.upload_file(str(sources.sd), s3_bucket, "videos/3/source/a.mov")
    run = tx.transcoder("rendition", "--source", f"s3://{s3_bucket}/videos/3/source/a.mov",
                        "--dest", f"s3://{s3_bucket}/videos/3/", "--name", "360p",
                        "--width", "640", "--height", "360", env=minio_server.env(s3_bucket))
    assert run.code == 0, run.stderr
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": run.result["renditions"][0]["file"]},
        ExpiresIn=300,
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_content(f'<video id="v" src="{url}" muted preload="auto"></video>')
            page.wait_for_function("document.getElementById('v').readyState >= 1", timeout=20000)
            duration = page.evaluate("document.getElementById('v').duration")
            seeked = page.evaluate("""() => new Promise(done => {
                const v = document.getElementById('v');
                v.addEventListener('seeked', () => done(
                    [v.currentTime, v.readyState, v.videoWidth, v.videoHeight]), {once: true});
                v.currentTime = 1.5;
            })""")
            ended = page.evaluate("""() => new Promise(done => {
                const v = document.getElementById('v');
                v.addEventListener('ended', () => done(v.currentTime), {once: true});
                v.play().catch(e => done(String(e)));
            })""")
        finally:
            browser.close()
    assert duration == pytest.approx(2.0, abs=0.1)
    time, ready, width, height = seeked
    assert time == pytest.approx(1.5, abs=0.05) and ready >= 2 and (width, height) == (640, 360)
    assert ended == pytest.approx(duration, abs=0.1)
