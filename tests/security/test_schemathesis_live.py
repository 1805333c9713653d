"""Stateful Schemathesis against a running API (real uvicorn on real PostgreSQL and MinIO), signed
in as a viewer and as staff: no generated request gets a 5xx, an undocumented status code, a
body that breaks the response schema or an undeclared content type.

Schemathesis runs as its CLI in subprocesses (examples, coverage, fuzzing and the stateful phase,
whose links it infers from the schema), both roles at once against one server, each role's run
split in parts (see `PARTS`) so that the two cores and the waits on PostgreSQL and MinIO overlap.
The server counts what it answered per run and operation: that tally, not Schemathesis' own
report, is what the case-count assertions trust.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from videoflix_api.config import Settings

from tests.fixtures.procs import wait_until
from tests.ops.apisupport import api

settings = api.settings  # the API's fixture: real PostgreSQL, MinIO and SMTP
media = api.media  # real ffmpeg output, so that playback routes find files

pytestmark = pytest.mark.security

# Per operation, role and per-operation phase (Schemathesis' `--max-examples`): the issue's bound.
MAX_EXAMPLES = int(os.environ.get("VIDEOFLIX_SCHEMATHESIS_EXAMPLES", "500"))
# Scenarios of the stateful phase, per role: each a chain of linked calls (about four requests),
# which the per-operation phases do not exercise. The per-operation count comes from those
# phases; more scenarios mostly repeat the same links at a high cost in Hypothesis' CPU.
STATEFUL_SCENARIOS = int(os.environ.get("VIDEOFLIX_SCHEMATHESIS_SCENARIOS", "100"))
# Requests an operation with input must get at the least, per role. Most get more than
# MAX_EXAMPLES (all phases together); a few far fewer: Schemathesis drops duplicate cases, and a
# lone integer path parameter has few distinct ones (staff's DELETE of a video: under 100).
MINIMUM_CASES = 10
ROLES = ("viewer", "staff")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# Seconds for all the runs together: within pytest-timeout's 600 (raise both on a slow machine).
RUN_TIMEOUT = float(os.environ.get("VIDEOFLIX_SCHEMATHESIS_TIMEOUT", "540"))
# The header naming the run (role and part) a request came from, for the server's tally.
RUN_HEADER = "X-Fuzz-Run"


@dataclass(frozen=True)
class Part:
    """One Schemathesis process of a role's run: which phases, over which operations."""

    name: str
    phases: tuple[str, ...]
    operations: tuple[str, ...] = ()  # Schemathesis' filter options; none: all operations

    @property
    def max_examples(self) -> int:
        return STATEFUL_SCENARIOS if self.phases == ("stateful",) else MAX_EXAMPLES


# One worker per process (see `schemathesis_command`), so a role's run is split into processes
# instead: the reads and the writes of the per-operation phases, and the stateful phase (which
# needs every operation for its links). Six processes keep both cores busy while any of them
# waits for a response.
PARTS = (
    Part("reads", ("examples", "coverage", "fuzzing"), ("--include-method=GET",)),
    Part("writes", ("examples", "coverage", "fuzzing"), ("--exclude-method=GET",)),
    Part("stateful", ("stateful",)),
)


def live_settings(settings: Settings) -> Settings:
    """Throttles out of the way (a 429 exercises nothing) and a cheap argon2, so that thousands
    of sign-in and registration attempts fit in the run; the access token outlives it."""
    return settings.model_copy(
        update={
            "rate_limit_login": 10**6,
            "rate_limit_login_account": 10**6,
            "rate_limit_register": 10**6,
            "rate_limit_reset": 10**6,
            "rate_limit_email_exists": 10**6,
            "password_hash_memory_kib": 1024,
            "password_hash_time_cost": 1,
            "password_hash_parallelism": 1,
            "access_token_seconds": 3600,
        }
    )


Operation = tuple[str, str]  # (method, path template)


class Tally:
    """ASGI wrapper counting the statuses the app answered, per run (`RUN_HEADER`) and routed
    operation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.statuses: dict[str, dict[Operation, Counter[int]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status: list[int] = []

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            # The router writes the matched route into this same scope.
            route = scope.get("route") if scope["type"] == "http" else None
            if route is not None:
                headers = dict(scope["headers"])
                run = headers.get(RUN_HEADER.lower().encode(), b"").decode("latin-1")
                operation = (scope["method"], route.path)
                per_run = self.statuses.setdefault(run, {})
                per_run.setdefault(operation, Counter())[status[0] if status else 0] += 1

    def answered(self, role: str) -> dict[Operation, Counter[int]]:
        """What the server answered a role's runs, per operation, all parts together."""
        total: dict[Operation, Counter[int]] = {}
        for run, per_operation in self.statuses.items():
            if run.split("/")[0] == role:
                for operation, statuses in per_operation.items():
                    total.setdefault(operation, Counter()).update(statuses)
        return total


@dataclass(frozen=True)
class Documented:
    takes_input: bool
    staff_only: bool


def operations(url: str) -> dict[Operation, Documented]:
    schema = httpx.get(f"{url}/openapi.json").json()
    return {
        (method.upper(), path): Documented(
            takes_input=bool(op.get("parameters") or op.get("requestBody")),
            staff_only="staff" in op.get("tags", []),
        )
        for path, methods in schema["paths"].items()
        for method, op in methods.items()
    }


def schemathesis_command(url: str, origin: str, cookie: str, run: str, part: Part) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        f"--phases={','.join(part.phases)}",
        *part.operations,
        f"--max-examples={part.max_examples}",
        # Reproducible: the same cases every run, so a failure is not a matter of luck.
        "--generation-deterministic",
        "--no-shrink",
        # Hypothesis' `too_slow` check times data generation, so under load it fails a run for
        # the machine's speed, not the API's behaviour; the other health checks are
        # deterministic here and stay on.
        "--suppress-health-check=too_slow",
        f"--checks={','.join(CHECKS)}",
        # One worker: CPython 3.11 keeps the AST constructor's recursion counter in state shared
        # by threads (gh-106905), and Hypothesis parses lambdas for its reprs, so with two worker
        # threads a run once died with "SystemError: AST constructor recursion depth mismatch".
        # Processes share nothing, hence `PARTS`.
        "--workers=1",
        "--continue-on-failure",
        "--request-timeout=30",
        "--report=json",
        "--report-json-path=report.json",  # in the process' own directory
        "--no-color",
        # The CSRF layer wants the server's own (public) origin on unsafe requests with cookies.
        f"--header=Origin: {origin}",
        f"--header=Cookie: {cookie}",
        f"--header={RUN_HEADER}: {run}",
    ]


def compiled_imports_env(cache: Path) -> dict[str, str]:
    """The environment for the Schemathesis processes, with bytecode cached under `cache`: the
    test environment may forbid writing it (PYTHONDONTWRITEBYTECODE), and then every process
    compiles Schemathesis and Hypothesis anew, seconds of CPU each."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def cpu_seconds() -> tuple[float, float]:
    """CPU time of this process (the server) and of its children that have exited."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


# What a Schemathesis run imports (most of it lazily, once it has the schema).
WARM_IMPORTS = (
    "schemathesis.cli.commands.run",
    "schemathesis.engine.core",
    "schemathesis.specs.openapi.schemas",
    "hypothesis",
    "requests",
)


@dataclass
class Run:
    name: str  # "role/part"
    part: Part
    process: subprocess.Popen[str]
    directory: Path
    elapsed: float | None = None  # seconds from the start to its exit

    def report(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads((self.directory / "report.json").read_text())
        return found

    def failure(self) -> str:
        """Why the run failed: the errors and failures of its report first (the console output is
        long and its middle is what a CI summary cuts), then the output's end."""
        output = (self.directory / "out.txt").read_text()
        try:
            report = self.report()
        except (OSError, ValueError):
            return output[-8000:]
        found = {k: report[k] for k in ("errors", "failures", "stop_reason") if report.get(k)}
        return json.dumps(found, indent=1, default=str)[:6000] + "\n---\n" + output[-3000:]


@contextmanager
def running(
    commands: dict[str, tuple[Part, list[str]]], base: Path, env: dict[str, str]
) -> Iterator[list[Run]]:
    """Every command at once, each in its own directory (its report lands there); ends any still
    running on the way out."""
    runs: list[Run] = []
    with ExitStack() as stack:
        for name, (part, command) in commands.items():
            # Its own directory also keeps Schemathesis' per-project cache (`.schemathesis/`)
            # out of the work tree, so no run learns from an earlier one.
            directory = base / name.replace("/", "-")
            directory.mkdir()
            out: IO[str] = stack.enter_context((directory / "out.txt").open("w"))
            process = subprocess.Popen(
                command, cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
            )
            runs.append(Run(name, part, process, directory))
        try:
            yield runs
        finally:
            for run in runs:
                if run.process.poll() is None:
                    run.process.kill()
                run.process.wait()


def test_no_generated_request_breaks_the_contract(
    settings: Settings, minio_server: Any, s3_bucket: str, media: Any, tmp_path: Path
) -> None:
    env = compiled_imports_env(tmp_path / "pycache")
    # Once, before the parallel processes, so that they load the bytecode instead of each
    # compiling it at the same time.
    subprocess.run(
        [sys.executable, "-c", f"import {', '.join(WARM_IMPORTS)}"],
        env=env,
        check=True,
        timeout=300,
    )
    app = api.build_app(live_settings(settings))
    tally = Tally(app)
    try:
        api.add_video(app, title="Seed", category="tests")
        api.put_ready_video(app, minio_server, s3_bucket, media, title="Ready", category="tests")
        accounts = {
            role: api.make_user(app, f"{role}@example.com", staff=role == "staff") for role in ROLES
        }
        with api.serve(tally) as url:  # type: ignore[arg-type]
            documented = operations(url)
            # Only the access cookie: a generated logout or refresh would otherwise end the
            # session the rest of the run is meant to exercise.
            cookies = {
                role: "vf_access=" + api.live_login(url, account)["vf_access"]
                for role, account in accounts.items()
            }
            origin = app.state.settings.public_base_url
            commands = {
                f"{role}/{part.name}": (
                    part,
                    schemathesis_command(url, origin, cookies[role], f"{role}/{part.name}", part),
                )
                for role in ROLES
                for part in PARTS
            }
            tally.statuses.clear()
            started = time.monotonic()
            cpu = cpu_seconds()
            with running(commands, tmp_path, env) as runs:

                def all_exited() -> bool:
                    for run in runs:
                        if run.elapsed is None and run.process.poll() is not None:
                            run.elapsed = time.monotonic() - started
                    return all(run.elapsed is not None for run in runs)

                wait_until(all_exited, "the Schemathesis runs", RUN_TIMEOUT)
            elapsed = time.monotonic() - started
            server_cpu, clients_cpu = (b - a for a, b in zip(cpu, cpu_seconds(), strict=True))
    finally:
        app.state.engine.dispose()
    total = sum(
        n for per_run in tally.statuses.values() for c in per_run.values() for n in c.values()
    )
    print(
        f"\nschemathesis: {total} requests, both roles, in {elapsed:.0f} s; CPU: "
        f"{clients_cpu:.0f} s in Schemathesis, {server_cpu:.0f} s in the server's process"
    )
    for run in runs:
        sent = sum(c.total() for c in tally.statuses.get(run.name, {}).values())
        print(f"  {run.name}: {sent} requests, exited after {run.elapsed or 0:.0f} s")
        assert run.process.returncode == 0, f"{run.name}:\n{run.failure()}"
        phases = {name: phase["status"] for name, phase in run.report()["phases"].items()}
        # Each phase ran (the stateful one: links were inferred and followed); the schema has
        # no examples, so that phase may skip.
        ran = {phase: phases[phase] for phase in run.part.phases if phase != "examples"}
        assert set(ran.values()) == {"success"}, (run.name, phases)
    staff_ops = [op for op, d in documented.items() if d.staff_only]
    assert len(staff_ops) >= 10
    for role in ROLES:
        answered = {op: tally.answered(role).get(op, Counter()) for op in documented}
        cases = {op: answered[op].total() for op in documented}
        print(
            f"  {role}: {sum(cases.values())} requests over {len(cases)} operations; "
            + ", ".join(f"{m} {p}={n}" for (m, p), n in sorted(cases.items(), key=lambda kv: kv[1]))
        )
        short = {
            op: n
            for op, n in cases.items()
            if n < (MINIMUM_CASES if documented[op].takes_input else 1)
        }
        assert short == {}, f"operations the {role}'s run barely reached: {short}"
        # Signed in for real, as that role: whatever was sent, a viewer never had a staff
        # operation succeed (a malformed body may still get its 400 first); staff got past the
        # check on every staff operation (not only 401s and 403s).
        if role == "viewer":
            succeeded = {op: n for op in staff_ops for s, n in answered[op].items() if s < 300}
            assert succeeded == {}, succeeded
        else:
            refused = [op for op in staff_ops if set(answered[op]) <= {401, 403}]
            assert refused == [], refused


def test_a_control_character_in_an_upload_type_is_refused_not_a_500(settings: Settings) -> None:
    """What Schemathesis found: the multipart upload's `content_type` became the S3 object's
    Content-Type header, where MinIO refused control characters and the API answered 500."""
    app = api.build_app(settings)
    try:
        video_id = api.add_video(app, title="Typed", category="tests")
        account = api.make_user(app, "typed@example.com", staff=True)
        with api.serve(app) as url:
            access = api.live_login(url, account)["vf_access"]
            headers = {"Origin": settings.public_base_url, "Cookie": f"vf_access={access}"}

            def start(content_type: str) -> httpx.Response:
                return httpx.post(
                    f"{url}/videos/{video_id}/multipart/",
                    json={"filename": "a.mp4", "size": 1000, "content_type": content_type},
                    headers=headers,
                )

            refused = start('\u009f"\u00a9\u001d')
            assert refused.status_code == 400, refused.text
            assert "content_type" in refused.json()
            for accepted in ("video/mp4", ""):  # browsers report "" for unknown types
                started = start(accepted)
                assert started.status_code == 201, (accepted, started.text)
                assert (
                    httpx.delete(f"{url}/videos/{video_id}/multipart/", headers=headers).status_code
                    == 204
                )
    finally:
        app.state.engine.dispose()


def test_a_control_character_in_a_form_file_type_is_stored_as_opaque_bytes(
    settings: Settings, minio_server: Any, s3_bucket: str
) -> None:
    """The same header through the streamed form upload: stored as application/octet-stream."""
    app = api.build_app(settings)
    try:
        account = api.make_user(app, "formtype@example.com", staff=True)
        with api.serve(app) as url:
            access = api.live_login(url, account)["vf_access"]
            body = (
                b'--bb\r\nContent-Disposition: form-data; name="title"\r\n\r\nT\r\n'
                b'--bb\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
                b"Content-Type: video/\x7fmp4\r\n\r\nxxxx\r\n--bb--\r\n"
            )
            created = httpx.post(
                f"{url}/videos/upload/",
                content=body,
                headers={
                    "Origin": settings.public_base_url,
                    "Cookie": f"vf_access={access}",
                    "Content-Type": "multipart/form-data; boundary=bb",
                },
            )
    finally:
        app.state.engine.dispose()
    assert created.status_code == 201, created.text
    prefix = f"videos/{created.json()['id']}/source/"
    (key,) = [k for k in minio_server.keys(s3_bucket) if k.startswith(prefix)]
    stored = minio_server.client().head_object(Bucket=s3_bucket, Key=key)
    assert stored["ContentType"] == "application/octet-stream"
