"""The three holes of issue 12, attacked over real HTTP (uvicorn, PostgreSQL, SMTP) and in the
rendered chart: account pre-takeover, spoofed X-Forwarded-For, tampered Host in mailed links.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError
from videoflix_api.config import Settings
from videoflix_api.deps import resolve_client

from tests.chart.helm import CHART, HelmError, container_env, find, pod_spec, render
from tests.fixtures.procs import wait_until
from tests.fixtures.smtp import SmtpServer
from tests.ops.apisupport import api

pytestmark = pytest.mark.security

settings = api.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP

ORIGIN = {"Origin": "https://app.videoflix.test"}
VICTIM = "victim@example.com"
ATTACKER_PASSWORD = "attacker knows this one"
VICTIM_PASSWORD = "victim chose this one"
DEFAULT_VALUES = CHART / "ci" / "default-values.yaml"
# Cheap argon2id: a registration or login costs milliseconds instead of ~0.4 s on this machine.
CHEAP_HASHING = {
    "password_hash_memory_kib": 8192,
    "password_hash_time_cost": 1,
    "password_hash_parallelism": 1,
}


def cheap(settings: Settings, **update: Any) -> Settings:
    known = {k: v for k, v in CHEAP_HASHING.items() if k in Settings.model_fields}
    return settings.model_copy(update={**known, **update})


@pytest.fixture
def live(settings: Settings) -> Iterator[str]:
    app = api.build_app(cheap(settings))
    try:
        with api.serve(app) as url:
            yield url
    finally:
        app.state.engine.dispose()


def register(url: str, email: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url + "/users/register/",
        json={"email": email, "password": password, "confirm_password": password},
        headers={**ORIGIN, **headers},
    )


def login(url: str, email: str, password: str) -> int:
    response = httpx.post(
        url + "/users/login/", json={"email": email, "password": password}, headers=ORIGIN
    )
    return response.status_code


def mails(smtp: SmtpServer, count: int) -> list[Any]:
    """The mailbox once it holds `count` messages (they are sent after the response)."""
    wait_until(lambda: len(smtp.messages) >= count, f"{count} mails", 30)
    return list(smtp.messages)


def mailed_link(message: Any) -> str:
    text = message.get_body(("plain",)).get_content()
    return next(word for word in text.split() if "token=" in word)


def open_link(url: str, link: str) -> str:
    """Open a mailed API link at the live server (as a mail scanner or the owner would); the
    redirect's target."""
    parts = urlsplit(link)
    response = httpx.get(f"{url}{parts.path}?{parts.query}", follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["location"]


# --- 1. Account pre-takeover ------------------------------------------------------------------


def test_the_victims_own_link_activates_the_victims_password(
    live: str, smtp_server: SmtpServer
) -> None:
    # The attacker registers the victim's address first; the link goes to the victim's mailbox.
    first = register(live, VICTIM, ATTACKER_PASSWORD)
    [attacker_mail] = mails(smtp_server, 1)
    # The victim, unaware, registers too: same answer, nothing says the address was taken.
    second = register(live, VICTIM, VICTIM_PASSWORD)
    victim_mail = mails(smtp_server, 2)[1]
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() == {"email": VICTIM}
    assert first.headers["content-type"] == second.headers["content-type"]
    assert attacker_mail["To"] == victim_mail["To"] == VICTIM
    assert attacker_mail["Subject"] == victim_mail["Subject"]
    attacker_link, victim_link = mailed_link(attacker_mail), mailed_link(victim_mail)

    # A mail scanner opens the victim's link before the victim does, then the victim: both
    # succeed (opening is safe), and the account now has the victim's password.
    assert open_link(live, victim_link).endswith("confirmed=1")
    assert open_link(live, victim_link).endswith("confirmed=1")
    assert login(live, VICTIM, VICTIM_PASSWORD) == 200
    assert login(live, VICTIM, ATTACKER_PASSWORD) == 401

    # The attacker's earlier link died when the victim registered: opening it changes nothing.
    assert open_link(live, attacker_link).endswith("confirmed=0")
    assert login(live, VICTIM, ATTACKER_PASSWORD) == 401

    # Registering the now active address again only mails its owner, and changes nothing.
    smtp_server.messages.clear()
    again = register(live, VICTIM, ATTACKER_PASSWORD)
    assert again.status_code == 201 and again.json() == first.json()
    [notice] = mails(smtp_server, 1)
    assert "token=" not in notice.get_body(("plain",)).get_content()
    assert login(live, VICTIM, ATTACKER_PASSWORD) == 401
    assert login(live, VICTIM, VICTIM_PASSWORD) == 200


# --- 2. Proxy trust ---------------------------------------------------------------------------


def email_exists(url: str, **headers: str) -> int:
    # A new address every time: only the per-client limit may answer 429, not the per-address one.
    email = f"{uuid.uuid4().hex}@example.com"
    response = httpx.get(url + "/users/email-exists/", params={"email": email}, headers=headers)
    return response.status_code


LIMIT = 3


@pytest.fixture
def limited(settings: Settings) -> Iterator[tuple[str, str]]:
    """Two live servers, email-exists limited to LIMIT per window: one trusting no proxy (the
    default), one trusting the loopback address as its ingress controller."""
    untrusting = api.build_app(cheap(settings, rate_limit_email_exists=LIMIT))
    trusting = api.build_app(
        cheap(
            settings,
            rate_limit_email_exists=LIMIT,
            trusted_proxies=[ipaddress.ip_network("127.0.0.1/32")],
        )
    )
    try:
        with api.serve(untrusting) as plain_url, api.serve(trusting) as proxied_url:
            yield plain_url, proxied_url
    finally:
        untrusting.state.engine.dispose()
        trusting.state.engine.dispose()


def test_a_spoofed_forwarded_for_does_not_reset_the_rate_limit(limited: tuple[str, str]) -> None:
    plain, _ = limited
    assert [email_exists(plain) for _ in range(LIMIT)] == [200] * LIMIT
    assert email_exists(plain) == 429
    for spoof in ("203.0.113.9", "203.0.113.9, 198.51.100.4", "::1", "unknown"):
        assert email_exists(plain, **{"X-Forwarded-For": spoof}) == 429, spoof
    assert email_exists(plain, Forwarded="for=203.0.113.9") == 429


def test_a_trusted_proxys_forwarded_for_names_the_client(limited: tuple[str, str]) -> None:
    _, proxied = limited
    client = {"X-Forwarded-For": "203.0.113.7"}
    assert [email_exists(proxied, **client) for _ in range(LIMIT)] == [200] * LIMIT
    assert email_exists(proxied, **client) == 429
    # Another client behind the same proxy has its own budget.
    assert email_exists(proxied, **{"X-Forwarded-For": "203.0.113.8"}) == 200
    # What the client itself wrote left of the proxy's entry is never read.
    assert email_exists(proxied, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) == 429


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("10.0.0.5", ["203.0.113.1"], [], "10.0.0.5"),  # default: the header is ignored
        ("10.0.0.5", ["203.0.113.1"], ["10.0.0.0/24"], "203.0.113.1"),
        ("10.0.1.5", ["203.0.113.1"], ["10.0.0.0/24"], "10.0.1.5"),  # a pod, not the ingress
        ("10.0.0.5", ["1.1.1.1, 203.0.113.1, 10.0.0.9"], ["10.0.0.0/24"], "203.0.113.1"),
        ("10.0.0.5", ["1.1.1.1", "203.0.113.1"], ["10.0.0.0/24"], "203.0.113.1"),
        ("::ffff:10.0.0.5", ["203.0.113.1"], ["10.0.0.0/24"], "203.0.113.1"),
        ("10.0.0.5", ["10.0.0.6"], ["10.0.0.0/24"], "10.0.0.6"),  # all proxies: the leftmost
        ("10.0.0.5", [], ["10.0.0.0/24"], "10.0.0.5"),
        (None, ["203.0.113.1"], ["10.0.0.0/24"], "unknown"),
    ],
)
def test_client_address_decision(
    peer: str | None, forwarded: list[str], trusted: list[str], client: str
) -> None:
    networks = [ipaddress.ip_network(t) for t in trusted]
    assert resolve_client(peer, forwarded, networks) == client


def test_trusted_proxies_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VIDEOFLIX_TRUSTED_PROXIES", "10.1.0.0/16, 192.0.2.7")
    parsed = Settings(dev_mode=True).trusted_proxies
    assert parsed == [ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("192.0.2.7/32")]
    monkeypatch.delenv("VIDEOFLIX_TRUSTED_PROXIES")
    assert Settings(dev_mode=True).trusted_proxies == []


# --- 3. Host header ---------------------------------------------------------------------------


TAMPERED = {
    "Host": "evil.example",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "http",
}


def test_a_tampered_host_never_changes_a_mailed_link(
    live: str, settings: Settings, smtp_server: SmtpServer
) -> None:
    assert settings.public_base_url and not settings.public_base_url.startswith("http://127.")
    assert register(live, "new@example.com", VICTIM_PASSWORD, **TAMPERED).status_code == 201
    [confirm] = mails(smtp_server, 1)
    link = mailed_link(confirm)
    assert link.startswith(f"{settings.public_base_url}/users/confirm/?"), link
    html = confirm.get_body(("html",)).get_content()
    assert "evil.example" not in html

    smtp_server.messages.clear()
    response = httpx.post(
        live + "/users/forgot-password/",
        json={"email": "new@example.com"},
        headers={**ORIGIN, **TAMPERED},
    )
    assert response.status_code == 200
    [reset] = mails(smtp_server, 1)
    link = mailed_link(reset)
    assert link.startswith(f"{settings.frontend_url}{settings.frontend_reset_path}?"), link
    assert parse_qs(urlsplit(link).query)["token"]


def test_settings_refuse_a_missing_public_url_outside_dev_mode() -> None:
    secret = "k" * 48
    with pytest.raises(ValidationError, match="VIDEOFLIX_PUBLIC_BASE_URL is required"):
        Settings(dev_mode=False, secret_key=secret)
    with pytest.raises(ValidationError, match="VIDEOFLIX_PUBLIC_BASE_URL is required"):
        Settings(dev_mode=False, secret_key=secret, public_base_url="")
    assert Settings(dev_mode=True).public_base_url is None  # dev mode may follow the request


def test_the_server_refuses_to_start_without_a_public_url() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOFLIX_")}
    env["VIDEOFLIX_SECRET_KEY"] = "k" * 48
    result = subprocess.run(
        [sys.executable, "-m", "videoflix_api", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "VIDEOFLIX_PUBLIC_BASE_URL is required" in result.stderr


# --- The chart --------------------------------------------------------------------------------


def api_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = pod_spec(find(objects, "Deployment", "-api"))["containers"]
    return dict(container)


def test_chart_admits_api_traffic_from_the_ingress_namespace_only() -> None:
    policy = find(render([DEFAULT_VALUES]), "NetworkPolicy", "-api")
    [rule] = policy["spec"]["ingress"]
    sources = rule["from"]  # never absent: an absent `from` admits every pod in the cluster
    assert sources[0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }
    assert len(sources) == 2 and set(sources[1]) == {"podSelector"}  # and the `helm test` pod
    assert sources[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"

    monitoring = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    custom = {"kubernetes.io/metadata.name": "traefik"}
    policy = find(
        render(
            [DEFAULT_VALUES],
            {
                "networkPolicy.metricsFrom": [monitoring],
                "networkPolicy.ingressNamespaceSelector": {"matchLabels": custom},
            },
        ),
        "NetworkPolicy",
        "-api",
    )
    [rule] = policy["spec"]["ingress"]
    assert rule["from"][0] == {"namespaceSelector": {"matchLabels": custom}}
    assert monitoring in rule["from"]  # Prometheus still scrapes /metrics
    assert len(rule["from"]) == 3


def test_chart_trusts_no_proxy_headers_unless_told() -> None:
    container = api_container(render([DEFAULT_VALUES]))
    assert "--no-proxy-headers" in container["command"]
    assert not any(arg.startswith("--forwarded-allow-ips") for arg in container["command"])
    assert "VIDEOFLIX_TRUSTED_PROXIES" not in container_env(container)
    container = api_container(render([DEFAULT_VALUES], {"api.trustedProxies": "10.2.3.0/24"}))
    assert container_env(container)["VIDEOFLIX_TRUSTED_PROXIES"]["value"] == "10.2.3.0/24"


def test_chart_refuses_to_render_without_a_public_url() -> None:
    container = api_container(render([DEFAULT_VALUES]))
    env = container_env(container)
    assert env["VIDEOFLIX_PUBLIC_BASE_URL"]["value"] == "https://api.videoflix.example.com"
    with pytest.raises(HelmError) as error:
        render([DEFAULT_VALUES], {"config.publicBaseUrl": ""})
    assert "config.publicBaseUrl is required" in error.value.stderr
    assert "Host header" in error.value.stderr
    with pytest.raises(HelmError) as error:
        render([DEFAULT_VALUES], {"config.publicBaseUrl": "api.example.com"})  # not a URL
    assert "publicBaseUrl" in error.value.stderr
