"""Password guessing: failed sign-ins are limited per account across many source addresses (known
and unknown e-mails alike), and a burst of simultaneous argon2 verifications keeps the API
process under its chart memory limit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from videoflix_api.config import Settings

from tests.fixtures.procs import free_port, wait_until
from tests.ops.apisupport import api

pytestmark = pytest.mark.security

settings = api.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_LIMIT = 5
ORIGIN = {"Origin": "https://app.videoflix.test"}
CHEAP_HASHING = {
    "password_hash_memory_kib": 8192,
    "password_hash_time_cost": 2,
    "password_hash_parallelism": 1,
}


@pytest.fixture
def guarded(settings: Settings) -> Iterator[FastAPI]:
    app = api.build_app(
        settings.model_copy(update={"rate_limit_login_account": ACCOUNT_LIMIT, **CHEAP_HASHING})
    )
    yield app
    app.state.engine.dispose()


def sign_in(app: FastAPI, host: str, email: str, password: str) -> httpx.Response:
    """One attempt from its own source address (what a guesser with many machines does)."""
    with TestClient(app, base_url=api.BASE, client=(host, 40000)) as client:
        return client.post("/users/login/", json={"email": email, "password": password})


def same_answer(a: httpx.Response, b: httpx.Response) -> bool:
    """The same answer but for the seconds left, which tick on between the two."""
    seconds = re.compile(r"\d+")
    return bool(seconds.sub("N", a.text) == seconds.sub("N", b.text))


def test_failed_logins_lock_the_account_across_addresses(guarded: FastAPI) -> None:
    victim = api.make_user(guarded, "victim@example.com")
    bystander = api.make_user(guarded, "bystander@example.com")
    hosts = (f"10.0.{n // 250}.{n % 250 + 1}" for n in range(1000))

    def guesses(email: str) -> list[httpx.Response]:
        # Each attempt from a fresh address: the per-address limit never applies.
        return [sign_in(guarded, next(hosts), email, f"guess {n}") for n in range(ACCOUNT_LIMIT)]

    assert [r.status_code for r in guesses(victim.email)] == [401] * ACCOUNT_LIMIT
    locked = sign_in(guarded, next(hosts), " Victim@Example.com", "guess again")
    assert locked.status_code == 429
    wait = int(locked.headers["retry-after"])
    assert 1 <= wait <= guarded.state.settings.rate_limit_login_account_window_seconds
    # While locked even the right password is refused: a guess cannot be confirmed by the lock.
    right = sign_in(guarded, next(hosts), victim.email, victim.password)
    assert right.status_code == 429 and same_answer(right, locked)
    # Other accounts are not affected.
    assert sign_in(guarded, next(hosts), bystander.email, bystander.password).status_code == 200

    # An unknown e-mail locks after the same number of failures, with the same answers.
    unknown = guesses("nobody@example.com")
    assert [r.status_code for r in unknown] == [401] * ACCOUNT_LIMIT
    ghost = sign_in(guarded, next(hosts), "nobody@example.com", "guess again")
    assert ghost.status_code == 429 and same_answer(ghost, locked)


def test_successful_logins_do_not_use_up_the_account_limit(guarded: FastAPI) -> None:
    owner = api.make_user(guarded, "owner@example.com")
    hosts = (f"10.1.0.{n}" for n in range(1, 250))
    fails = [sign_in(guarded, next(hosts), owner.email, "typo") for _ in range(ACCOUNT_LIMIT - 1)]
    assert {r.status_code for r in fails} == {401}
    for _ in range(3):  # the owner signs in: each success gives its attempt back
        assert sign_in(guarded, next(hosts), owner.email, owner.password).status_code == 200
    assert sign_in(guarded, next(hosts), owner.email, "typo").status_code == 401
    assert sign_in(guarded, next(hosts), owner.email, "typo").status_code == 429


def chart_memory_limit() -> int:
    values = yaml.safe_load((REPO / "charts/videoflix/values.yaml").read_text())
    text = str(values["api"]["resources"]["limits"]["memory"])
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", text).groups()  # type: ignore[union-attr]
    return int(number) * {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[unit]


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


def env_of(settings: Settings, **overrides: Any) -> dict[str, str]:
    """`settings` as the VIDEOFLIX_* environment of a separate API process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOFLIX_")}
    fields = settings.model_dump(exclude_none=True) | overrides
    for name in (
        "database_url",
        "s3_endpoint_url",
        "s3_bucket",
        "s3_region",
        "smtp_host",
        "smtp_port",
        "frontend_url",
        "public_base_url",
        *overrides,
    ):
        env[f"VIDEOFLIX_{name.upper()}"] = str(fields[name])
    for secret in ("secret_key", "s3_access_key_id", "s3_secret_access_key"):
        env[f"VIDEOFLIX_{secret.upper()}"] = getattr(settings, secret).get_secret_value()
    env["VIDEOFLIX_LOG_LEVEL"] = "WARNING"
    return env


def test_simultaneous_logins_stay_under_the_memory_limit(settings: Settings) -> None:
    limit = chart_memory_limit()
    port = free_port()
    # The chart's command and argon2 memory cost (the default, 64 MiB per verification); one pass
    # instead of three only makes each verification quicker, not smaller.
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "videoflix_api",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env_of(
            settings,
            rate_limit_login=1000,
            rate_limit_login_account=1000,
            password_hash_time_cost=1,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: server.poll() is not None or httpx.get(url + "/health").status_code == 200,
            "the API process to serve",
            60,
        )
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        idle = peak_rss(server.pid)
        start = threading.Barrier(50)

        def attempt(n: int) -> int:
            body = {"email": f"guess{n}@example.com", "password": "not the password"}
            with httpx.Client(base_url=url, headers=ORIGIN, timeout=120) as client:
                start.wait()
                return client.post("/users/login/", json=body).status_code

        with ThreadPoolExecutor(50) as pool:
            codes = list(pool.map(attempt, range(50)))
        peak = peak_rss(server.pid)
        print(
            f"API RSS: idle {idle / 2**20:.0f} MiB, peak over 50 simultaneous logins "
            f"{peak / 2**20:.0f} MiB, chart limit {limit / 2**20:.0f} MiB"
        )
        assert codes == [401] * 50  # every attempt was verified (none throttled or failed)
        assert peak < limit
    finally:
        server.terminate()
        server.wait(timeout=30)
