"""What a player gets from the real embedded server after a real transcode: a master playlist with
the transcoder's peak bandwidth and codecs, and a storyboard whose sprite URLs it can fetch."""

from __future__ import annotations

import re

import httpx

from tests.embedded.server import ReadyServer

CUE_IMAGE = re.compile(r"^(?P<url>\S+)#xywh=\d+,\d+,\d+,\d+$")
STREAM = re.compile(
    r'^#EXT-X-STREAM-INF:BANDWIDTH=(\d+),AVERAGE-BANDWIDTH=(\d+),CODECS="([^"]+)",'
    r'RESOLUTION=(\d+)x(\d+),NAME="(\w+)"$'
)


def test_master_playlist_has_peak_average_and_codecs(ready_server: ReadyServer) -> None:
    video_id = ready_server.video["id"]
    converted = ready_server.server.video(ready_server.client, video_id)["converted_files"]
    r = ready_server.client.get(f"/videos/{video_id}/hls/master.m3u8")
    assert r.status_code == 200, r.text
    streams = [STREAM.match(line) for line in r.text.splitlines() if "STREAM-INF" in line]
    assert len(streams) == len(converted) == 2 and all(streams), r.text
    for match in streams:
        assert match is not None
        peak, average, codecs, width, height, name = match.groups()
        assert int(peak) >= int(average) > 0
        assert re.fullmatch(r"avc1\.64[0-9a-f]{4},mp4a\.40\.2", codecs)
        assert name in converted and int(height) == converted[name]["height"]
        assert int(width) == converted[name]["width"]


def test_storyboard_sprite_urls_are_fetchable(ready_server: ReadyServer) -> None:
    video_id = ready_server.video["id"]
    r = ready_server.client.get(
        f"/videos/{video_id}/thumbnail/", params={"kind": "storyboard"}, follow_redirects=False
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/vtt")
    assert r.headers["cache-control"].startswith("private, max-age=")
    cues = [m for line in r.text.splitlines() if (m := CUE_IMAGE.match(line))]
    assert len(cues) >= 2  # a 4 s video: a tile every 2 s
    urls = {m["url"] for m in cues}
    assert len(urls) == 1
    for url in urls:
        assert url.startswith("http") and f"videos/{video_id}/thumbnails/sprite.jpg" in url
        sprite = httpx.get(url)
        assert sprite.status_code == 200
        assert sprite.headers["content-type"] == "image/jpeg"
        assert sprite.content[:2] == b"\xff\xd8"
