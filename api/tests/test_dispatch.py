"""The hand-over to Kubernetes against an API server that accepts connections and never answers:
each call gives up after the request timeout with a clear reason, instead of hanging the upload
request (or the outbox sweeper) for ever."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from videoflix_api.dispatch import DispatchError, KubernetesDispatcher
from videoflix_core.db import Video


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP listener whose backlog takes connections that nobody ever reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_hung_api_server_fails_the_hand_over_after_the_request_timeout(
    silent_server: str,
) -> None:
    configuration = client.Configuration()
    configuration.host = silent_server
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    dispatcher = KubernetesDispatcher(api, "videoflix", "media", attempts=2, request_timeout=0.5)
    video = Video(id=7, title="t", source_key="videos/7/source/a.mp4", transcode_generation=0)

    for action in (lambda: dispatcher.submit(video), lambda: dispatcher.cancel(7)):
        started = time.monotonic()
        with pytest.raises(DispatchError, match="Kubernetes API unreachable"):
            action()
        # Two attempts of 0.5 s and one back-off of 0.8 s; without a timeout this never returns.
        assert time.monotonic() - started < 15
