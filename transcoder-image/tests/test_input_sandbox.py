"""Sources that would make FFmpeg open more than the one file: refused (exit 2), no connection.

Real FFmpeg against a TCP listener on 127.0.0.1: a playlist, a concat list, an SDP session or an
image sequence naming it must never reach it. A control run with bare ffprobe proves the listener
would have seen the connection.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from videoflix_transcoder import plan
from videoflix_transcoder.errors import BadInput
from videoflix_transcoder.probe import (
    ALLOWED_FORMATS,
    decode_check_argv,
    demux_argv,
    ffprobe_argv,
    parse_probe,
)

from tests.fixtures.procs import wait_until


class Listener:
    """Accepts and counts TCP connections on 127.0.0.1 until closed."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> int:
        """Stop after draining the backlog: a finished handshake still counts."""
        if self._stopped.is_set():
            return self.connections
        self._stopped.set()
        self._thread.join(timeout=5)
        self.sock.settimeout(0)
        try:
            while True:
                self.sock.accept()[0].close()
                self.connections += 1
        except OSError:
            pass
        self.sock.close()
        return self.connections


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def hls(url: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{url}/seg0.ts\n#EXT-X-ENDLIST\n"


def hostile_sources(d: Path, port: int, sd: Path) -> dict[str, Path]:
    url = f"http://127.0.0.1:{port}"
    files = {
        # The names an upload could have, and "source": the name of an S3 download in scratch.
        "hls.m3u8": hls(url),
        "hls-as.mp4": hls(url),
        "source": hls(url),
        "concat.mp4": f"ffconcat version 1.0\nfile '{url}/a.mp4'\nfile '{sd}'\n",
        "session.sdp": (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        ),
    }
    shutil.copy(sd, d / "other.mov")
    files["hls-local.mp4"] = hls_local("other.mov")
    paths = {}
    for name, text in files.items():
        path = d / name.replace("/", "_")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths[name] = path
    # An image-sequence "video": a pattern name that makes image2 read other files.
    frames = d / "frames"
    frames.mkdir()
    for i in range(3):
        shutil.copy(sd, frames / f"img{i:03d}.png")
    paths["sequence"] = frames / "img%03d.png"  # exists too, so it passes "is a file"
    shutil.copy(sd, paths["sequence"])
    paths["url"] = Path(f"{url}/v.mp4")  # a URL is not a local path: never opened
    return paths


def test_controls_bare_ffprobe_connects_and_follows_playlists(
    listener: Listener, sources: Any, tmp_path: Path
) -> None:
    """Without the sandbox the listener sees FFmpeg, and a playlist pulls in another file."""
    proc = subprocess.Popen(
        ["ffprobe", "-v", "error", "-rw_timeout", "2000000",
         f"http://127.0.0.1:{listener.port}/list.m3u8"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: listener.connections > 0, "a connection from bare ffprobe", 20)
    finally:
        proc.kill()
        proc.wait()
    segment = tmp_path / "other.mov"
    shutil.copy(sources.sd, segment)
    playlist = tmp_path / "local.mp4"
    playlist.write_text(hls_local(segment.name))
    report = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(playlist)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert '"codec_type": "video"' in report  # the other file's stream, read through the list


def hls_local(name: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{name}\n#EXT-X-ENDLIST\n"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("hls.m3u8", "format hls is not accepted"),
        ("hls-as.mp4", "format hls is not accepted"),
        ("hls-local.mp4", "format hls is not accepted"),
        ("source", "format hls is not accepted"),
        ("concat.mp4", "format concat is not accepted"),
        ("session.sdp", "format sdp is not accepted"),
        ("sequence", "format image2 is not accepted"),
        ("url", "unsupported URI"),
    ],
)
def test_hostile_source_is_refused_without_connecting(
    name: str, reason: str, listener: Listener, sources: Any, tx: Any, tmp_path: Path
) -> None:
    source = hostile_sources(tmp_path, listener.port, sources.sd)[name]
    for command in (["probe"], ["thumbnail", "--dest", str(tmp_path / "out")]):
        run = tx.transcoder(*command, "--source", str(source).replace("http:/", "http://"))
        assert run.code == 2, (name, run.result, run.stderr[-500:])
        assert reason in run.result["error"]
    assert listener.close() == 0, f"{name}: FFmpeg connected to the listener"


def test_allowed_source_still_probes(sources: Any, tx: Any) -> None:
    for source in (sources.hd, sources.sd):
        run = tx.transcoder("probe", "--source", str(source))
        assert run.code == 0, run.result


def test_every_ffmpeg_input_is_sandboxed(sources: Any) -> None:
    """Each command line names only local files and allowed demuxers before its input."""
    from videoflix_transcoder.commands import probe_file

    info = probe_file(sources.sd)
    src = str(sources.sd)
    rung = plan.default_rung("360p", 640, 360)
    outputs = plan.plan_outputs(info, [rung], ["/tmp/o.mp4"])
    board = plan.storyboard_plan(info)
    argvs = [
        ffprobe_argv(src), decode_check_argv(src, 0), demux_argv(src, 0),
        plan.encode_argv(src, info, outputs, threads=1),
        plan.poster_argv(src, info, "/tmp/p.jpg", skip_dark=True, threads=1),
        plan.sprite_argv(src, info, board, "/tmp/s.jpg", threads=1),
    ]
    for argv in argvs:
        at = argv.index(src)
        before = argv[:at]
        assert before[before.index("-protocol_whitelist") + 1] == "file", argv
        allowed = before[before.index("-format_whitelist") + 1].split(",")
        assert not {"hls", "concat", "image2", "lavfi", "sdp", "rtp", "dash"} & set(allowed)
        assert argv.count(src) == 1  # the one input


def test_parser_refuses_formats_outside_the_allow_list() -> None:
    video = {"codec_type": "video", "codec_name": "h264", "width": 64, "height": 64, "index": 0}
    for name in ("hls", "concat", "lavfi", "sdp", "rtp", "image2pipe", "yuv4mpegpipe"):
        report = {"streams": [video], "format": {"format_name": name, "duration": "2"}}
        with pytest.raises(BadInput, match=r"not accepted|still image"):
            parse_probe(report)
    refused = {"error": {"string": "Invalid argument",
                         "stderr": "[hls @ 0x55d0] Format not on whitelist 'mov'\n"}}
    with pytest.raises(BadInput, match="format hls is not accepted"):
        parse_probe(refused)
    assert "mov" in ALLOWED_FORMATS and "matroska" in ALLOWED_FORMATS
