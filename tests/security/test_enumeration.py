"""Account enumeration: register, forgot-password and login answer an existing e-mail and an
unknown one alike, in their statuses, bodies and time, against a real uvicorn on real PostgreSQL
and SMTP; `/users/email-exists/` (which the frontend needs) stays limited per client and e-mail.

Timing: each endpoint gets 400 sequential requests, half with existing e-mails, in an order
shuffled with a fixed seed, so the loaded machine's drift falls on both alike. The order is a plain
shuffle on purpose: whatever one request leaves behind for the next (an SMTP session closing, a
commit's WAL flush, a garbage collection) then falls on either kind as often. Pairs of one of each
(a forced alternation) put the request after an existing address on an unknown one 3 times in 4, and
that residue alone once read as a steady shift. The median difference between the k-th existing and
the k-th unknown request must stay under 10 ms, and a Mann-Whitney U test (printed) must not find a
steady shift (p > 1e-4). The server hashes with a cheap argon2id
(about 20 ms here instead of about 400 ms) to keep 1,200 requests within a minute or two: still
twice the 10 ms, so a login that skipped the dummy verification for unknown e-mails would fail.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import random
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from videoflix_api.config import Settings

from tests.fixtures.procs import free_port
from tests.ops.apisupport import api

pytestmark = pytest.mark.security

settings = api.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP

REQUESTS = 400
EXISTING_ACCOUNTS = 20
MAX_MEDIAN_GAP = 0.010
MIN_P_VALUE = 1e-4
SEED = 12
ORIGIN = {"Origin": "https://app.videoflix.test"}
# Headers that differ between any two responses, whoever asked.
VOLATILE_HEADERS = {"date", "content-length", "x-request-id"}
CHEAP_HASHING = {
    "password_hash_memory_kib": 8192,
    "password_hash_time_cost": 2,
    "password_hash_parallelism": 1,
}


def mann_whitney_p(a: list[float], b: list[float]) -> tuple[float, float]:
    """U of `a` against `b` and its two-sided p-value (normal approximation with the tie
    correction; fine for samples of hundreds)."""
    pooled = sorted([(value, 0) for value in a] + [(value, 1) for value in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    start = 0
    while start < len(pooled):
        end = start
        while end + 1 < len(pooled) and pooled[end + 1][0] == pooled[start][0]:
            end += 1
        for index in range(start, end + 1):
            ranks[index] = (start + end) / 2 + 1
        tied = end - start + 1
        ties += tied**3 - tied
        start = end + 1
    n1, n2 = len(a), len(b)
    rank_sum = sum(rank for rank, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = rank_sum - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return u, 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return u, math.erfc(max(z, 0.0) / math.sqrt(2))


def test_mann_whitney_matches_a_known_value() -> None:
    # Same-shaped samples are indistinguishable; disjoint ones are not.
    assert mann_whitney_p([1, 2, 3, 4], [1, 2, 3, 4])[1] > 0.9
    u, p = mann_whitney_p([float(x) for x in range(30)], [float(x) + 100 for x in range(30)])
    assert u == 0 and p < 1e-9


@dataclass
class Sample:
    existing: bool
    seconds: float
    status: int
    body: str
    headers: frozenset[str]


def shuffled_order(requests: int, seed: int) -> list[bool]:
    """Existing (True) and unknown (False), half each, shuffled: both halves see the same load,
    and each kind follows either kind as often (no carry-over from one request to the next that
    falls on one kind more than the other)."""
    order = [True, False] * (requests // 2)
    random.Random(seed).shuffle(order)
    return order


def test_the_order_follows_each_kind_by_either_kind_as_often() -> None:
    # What one request leaves behind for the next must not fall on one kind more than the
    # other: each of the four transitions about a quarter of the time (pairs of one of each
    # made existing -> unknown three times as common as existing -> existing).
    order = shuffled_order(REQUESTS, SEED)
    assert order.count(True) == order.count(False) == REQUESTS // 2
    transitions = collections.Counter(itertools.pairwise(order))
    quarter = (REQUESTS - 1) / 4
    assert all(
        abs(transitions[kinds] - quarter) < quarter / 4
        for kinds in itertools.product([True, False], repeat=2)
    ), transitions


def measure(
    live: Live,
    send: Callable[[httpx.Client, bool, int], httpx.Response],
    label: str,
    mails: Callable[[bool], int] = lambda existing: 0,
    mailbox: Any = None,
) -> list[Sample]:
    """Time `send` per request. The next request starts once the server finished the work it
    does after answering (`mails(existing)` messages): that work for one address would
    otherwise fall on its neighbour's time, which is not the answer time measured here."""
    samples = []
    with httpx.Client(base_url=live.url, headers=ORIGIN, timeout=30) as client:
        for index in range(10):  # warm the pool, the thread pool and PostgreSQL's caches
            send(client, index % 2 == 0, -index - 1)
        assert live.app.state.deferred.wait_idle(30)
        for index, existing in enumerate(shuffled_order(REQUESTS, SEED)):
            expected = len(mailbox.messages) + mails(existing) if mailbox else 0
            started = time.perf_counter()
            response = send(client, existing, index)
            seconds = time.perf_counter() - started
            assert live.app.state.deferred.wait_idle(30), "after-response work still running"
            if mailbox:
                assert len(mailbox.messages) == expected
            headers = frozenset(response.headers.keys()) - VOLATILE_HEADERS
            samples.append(Sample(existing, seconds, response.status_code, response.text, headers))
    known, unknown, gap = timing(samples)
    u, p = mann_whitney_p(known, unknown)
    after_existing, after_unknown = carry_over(samples)
    print(
        f"{label}: median existing {statistics.median(known) * 1000:.1f} ms, unknown "
        f"{statistics.median(unknown) * 1000:.1f} ms, median paired gap {gap * 1000:+.2f} ms, "
        f"Mann-Whitney U {u:.0f}, p {p:.3f}; median after an existing "
        f"{after_existing * 1000:.1f} ms, after an unknown {after_unknown * 1000:.1f} ms"
    )
    return samples


def timing(samples: list[Sample]) -> tuple[list[float], list[float], float]:
    """The two halves' latencies and the median of the differences between the k-th existing and
    the k-th unknown request (close in time, so the machine's load, shared by the two, cancels)."""
    known = [s.seconds for s in samples if s.existing]
    unknown = [s.seconds for s in samples if not s.existing]
    gaps = [a - b for a, b in zip(known, unknown, strict=True)]
    return known, unknown, statistics.median(gaps)


def carry_over(samples: list[Sample]) -> tuple[float, float]:
    """Median latency of the requests that follow an existing address, and of those that follow
    an unknown one: what one request leaves for the next, which the shuffle spreads evenly."""
    after: dict[bool, list[float]] = {True: [], False: []}
    for previous, current in itertools.pairwise(samples):
        after[previous.existing].append(current.seconds)
    return statistics.median(after[True]), statistics.median(after[False])


def assert_indistinguishable(
    samples: list[Sample], normalize: Callable[[str], str] = lambda body: body
) -> None:
    def answers(existing: bool) -> set[tuple[int, str, frozenset[str]]]:
        return {(s.status, normalize(s.body), s.headers) for s in samples if s.existing == existing}

    assert answers(True) == answers(False)
    assert len(answers(True)) == 1, answers(True)
    known, unknown, gap = timing(samples)
    assert abs(gap) < MAX_MEDIAN_GAP, gap
    # A smaller but steady gap is still an oracle given enough tries (a token written only for
    # existing accounts costs a few ms); the shuffled order leaves noise no such steady shift.
    assert mann_whitney_p(known, unknown)[1] > MIN_P_VALUE


@dataclass
class Live:
    url: str
    app: Any
    existing: list[str]


@pytest.fixture
def live(settings: Settings) -> Iterator[Live]:
    unlimited = settings.model_copy(
        update={
            "rate_limit_login": 100_000,
            "rate_limit_register": 100_000,
            "rate_limit_reset": 100_000,
            "rate_limit_login_account": 100_000,
            **CHEAP_HASHING,
        }
    )
    app = api.build_app(unlimited)
    existing = [
        api.make_user(app, f"member{index}@example.com").email for index in range(EXISTING_ACCOUNTS)
    ]
    try:
        with api.serve(app) as url:
            yield Live(url, app, existing)
    finally:
        app.state.engine.dispose()


def address(existing: list[str], is_existing: bool, index: int) -> str:
    """Both kinds cycle through as many addresses: each e-mail's rate-limit bucket is written as
    often either way, so only the accounts differ."""
    if is_existing:
        return existing[index % len(existing)]
    return f"stranger{index % len(existing)}@example.com"


def test_register_does_not_reveal_accounts(live: Live, smtp_server: Any) -> None:

    def register(client: httpx.Client, is_existing: bool, index: int) -> httpx.Response:
        email = address(live.existing, is_existing, index)
        body = {"email": email, "password": api.PASSWORD, "confirm_password": api.PASSWORD}
        return client.post("/users/register/", json=body)

    samples = measure(live, register, "register", lambda existing: 1, smtp_server)
    assert {s.status for s in samples} == {201}
    # The answer echoes the (normalized) address it was given, whoever owns it.
    assert_indistinguishable(samples, lambda body: re.sub(r'"email":"[^"]*"', '"email":_', body))


def test_forgot_password_does_not_reveal_accounts(live: Live, smtp_server: Any) -> None:

    def forgot(client: httpx.Client, is_existing: bool, index: int) -> httpx.Response:
        email = address(live.existing, is_existing, index)
        return client.post("/users/forgot-password/", json={"email": email})

    samples = measure(live, forgot, "forgot-password", lambda existing: int(existing), smtp_server)
    assert {s.status for s in samples} == {200}
    assert_indistinguishable(samples)


def test_login_does_not_reveal_accounts(live: Live) -> None:

    def login(client: httpx.Client, is_existing: bool, index: int) -> httpx.Response:
        body = {"email": address(live.existing, is_existing, index), "password": "not the password"}
        return client.post("/users/login/", json=body)

    samples = measure(live, login, "login")
    assert {s.status for s in samples} == {401}
    assert_indistinguishable(samples)


def test_email_exists_is_limited_per_client_and_per_address(settings: Settings) -> None:
    app = api.build_app(settings.model_copy(update={"rate_limit_email_exists": 3}))
    try:

        def ask(client: TestClient, address: str) -> int:
            return client.get("/users/email-exists/", params={"email": address}).status_code

        def from_(host: str) -> TestClient:
            return TestClient(app, base_url=api.BASE, client=(host, 1234))

        with from_("10.0.0.1") as one, from_("10.0.0.2") as two:
            # One client, many addresses: the client's limit.
            assert [ask(one, f"a{n}@example.com") for n in range(4)] == [200, 200, 200, 429]
            assert ask(two, "a0@example.com") == 200  # another client is not held back by it
        # One address, many clients: the address's limit, however it is spelled.
        codes = []
        for host, spelling in enumerate(["target@example.com"] * 3 + [" Target@Example.COM "]):
            with from_(f"10.0.1.{host}") as client:
                codes.append(ask(client, spelling))
        assert codes == [200, 200, 200, 429]
        with from_("10.0.1.99") as client:
            assert ask(client, "other@example.com") == 200
    finally:
        app.state.engine.dispose()


@dataclass
class _HeldInbox:
    """An SMTP handler that accepts a message only once `release` is set."""

    release: threading.Event
    receiving: threading.Event = field(default_factory=threading.Event)
    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        self.messages.append(envelope.original_content)
        return "250 Message accepted for delivery"


def test_a_hanging_smtp_relay_delays_only_mail(settings: Settings) -> None:
    # Each forgot-password for an existing account mails after the answer. With the relay
    # hanging, those mails must wait in their own pool, not in the request thread pool (40
    # threads): 50 of them, then a sign-in (a synchronous endpoint) still answers at once.
    inbox = _HeldInbox(threading.Event())
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    app = api.build_app(
        settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_timeout_seconds": 60,
                "rate_limit_reset": 100_000,
                **CHEAP_HASHING,
            }
        )
    )
    account = api.make_user(app, "held@example.com")
    try:
        with api.serve(app) as url, httpx.Client(base_url=url, headers=ORIGIN) as client:
            for _ in range(50):
                forgot = client.post("/users/forgot-password/", json={"email": account.email})
                assert forgot.status_code == 200
            assert inbox.receiving.wait(30), "no reset mail reached the SMTP server"
            body = {"email": account.email, "password": account.password}
            assert client.post("/users/login/", json=body, timeout=10).status_code == 200
            inbox.release.set()
            assert app.state.deferred.wait_idle(60)
        assert len(inbox.messages) == 50
    finally:
        inbox.release.set()
        controller.stop()
        app.state.engine.dispose()
