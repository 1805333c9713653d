"""The local kubelet's read-only HTTPS endpoint for `GET /containerLogs/<ns>/<pod>/<container>`.

`kubectl logs` / `read_namespaced_pod_log` go to the API server, which forwards them to the node's
kubelet (the node's InternalIP and `daemonEndpoints.kubeletEndpoint.Port`). Serving that one path
lets code under test read pod logs through the real API, with its real RBAC check (`pods/log`).
Only `tailLines` and `limitBytes` are honoured; no follow, no timestamps, no previous container.
The API server does not verify a kubelet's serving certificate unless told to, so a throwaway
self-signed one is enough.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Logs are read from their end; enough for any tail a test asks for.
_READ_LIMIT = 256 * 1024

# (namespace, pod) → the pod's log directory, or None when this node never ran it.
PodDir = Callable[[str, str], Path | None]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "videoflix-local-kubelet")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "kubelet.crt", directory / "kubelet.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def tail(data: bytes, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """What a kubelet returns for those query parameters (limitBytes cuts the tail's end)."""
    if tail_lines is not None and tail_lines >= 0:
        data = b"".join(data.splitlines(keepends=True)[-tail_lines:]) if tail_lines else b""
    if limit_bytes is not None and limit_bytes > 0:
        data = data[:limit_bytes]
    return data


def _int(query: dict[str, list[str]], key: str) -> int | None:
    try:
        return int(query[key][0])
    except (KeyError, IndexError, ValueError):
        return None


class LogServer:
    def __init__(self, pod_dir: PodDir, workdir: Path) -> None:
        self._pod_dir = pod_dir
        self._workdir = workdir
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "log server not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = _self_signed(self._workdir)
        pod_dir = self._pod_dir

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                directory = (
                    pod_dir(parts[1], parts[2])
                    if len(parts) == 4 and parts[0] == "containerLogs"
                    else None
                )
                log_file = directory / f"{parts[3]}.log" if directory is not None else None
                if log_file is None or "/" in parts[3] or not log_file.is_file():
                    self.send_error(404, "no such container log on this node")
                    return
                with log_file.open("rb") as handle:
                    handle.seek(max(0, handle.seek(0, 2) - _READ_LIMIT))
                    data = handle.read()
                query = parse_qs(url.query)
                body = tail(data, _int(query, "tailLines"), _int(query, "limitBytes"))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per request would drown the test output

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="kubelet-logs", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
