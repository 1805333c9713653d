"""The chart rendered by the real Helm: lint, objects, security, wiring, RBAC and secrets."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.chart.helm import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    NAMESPACE,
    REPO,
    HelmError,
    Obj,
    container_env,
    find,
    find_all,
    has_pods,
    helm,
    pod_spec,
    render,
    resolve_env,
)

DEFAULT = CHART / "ci" / "default-values.yaml"
FULL = CHART / "ci" / "full-values.yaml"
EXISTING = CHART / "ci" / "existing-secrets-values.yaml"
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
)


def load_sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_sync", REPO / "charts" / "sync.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_sync"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=CI_VALUES, ids=lambda p: p.stem)
def ci_objects(request: pytest.FixtureRequest) -> list[Obj]:
    return render([request.param])


@pytest.fixture(scope="module")
def default_objects() -> list[Obj]:
    return render([DEFAULT])


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_lint_strict(values: Path) -> None:
    out = helm(
        "lint", "--strict", str(CHART), "--values", str(values), "--kube-version", KUBE_VERSION
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_every_object_has_the_standard_labels(ci_objects: list[Obj]) -> None:
    assert len(ci_objects) > 15
    for obj in ci_objects:
        labels = obj["metadata"].get("labels") or {}
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert len(obj["metadata"]["name"]) <= 63


def test_one_resource_per_template_file() -> None:
    for path in (CHART / "templates").rglob("*.yaml"):
        text = path.read_text()
        assert text.count("\napiVersion:") + text.startswith("apiVersion:") <= 1, path


def test_workload_selectors_match_their_pod_labels(ci_objects: list[Obj]) -> None:
    for obj in ci_objects:
        if obj["kind"] != "Deployment":
            continue
        selector = obj["spec"]["selector"]["matchLabels"]
        pod_labels = obj["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        for constraint in obj["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            assert constraint["labelSelector"]["matchLabels"] == selector


def test_services_select_their_deployments(ci_objects: list[Obj]) -> None:
    deployments = find_all(ci_objects, "Deployment")
    for service in find_all(ci_objects, "Service"):
        selected = [
            d
            for d in deployments
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in pod_spec(selected[0])["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_every_pod_meets_the_restricted_pod_security_standard(ci_objects: list[Obj]) -> None:
    pods = [(o, pod_spec(o)) for o in ci_objects if has_pods(o)]
    assert {o["kind"] for o, _ in pods} >= {"Deployment", "Job", "Pod"}
    for obj, spec in pods:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, where
        assert pod_sc["runAsUser"] == 10001, where
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, where
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc.get("privileged"), where
            assert container["resources"]["requests"], where
            assert "memory" in container["resources"]["limits"], where


def test_only_the_api_and_operator_mount_an_api_token(ci_objects: list[Obj]) -> None:
    for obj in ci_objects:
        if not has_pods(obj):
            continue
        spec = pod_spec(obj)
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        assert spec["automountServiceAccountToken"] is (component in ("api", "operator")), component


def test_api_deployment_probes_and_rollout(default_objects: list[Obj]) -> None:
    api = find(default_objects, "Deployment", "-api")
    assert api["spec"]["replicas"] == 2
    assert api["spec"]["strategy"]["type"] == "RollingUpdate"
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [container] = pod_spec(api)["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"][0]["name"] == "http"
    assert container["command"][:2] == ["uvicorn", "videoflix_api.main:create_app"]
    topology = {c["topologyKey"] for c in pod_spec(api)["topologySpreadConstraints"]}
    assert topology == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    pdb = find(default_objects, "PodDisruptionBudget", "-api")
    assert pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]


def test_hpa_takes_over_the_replica_count() -> None:
    objects = render([FULL])
    api = find(objects, "Deployment", "-api")
    assert "replicas" not in api["spec"]
    hpa = find(objects, "HorizontalPodAutoscaler", "-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)


def test_ingress_is_fit_for_uploads() -> None:
    ingress = find(render([FULL]), "Ingress", "-api")
    annotations = ingress["metadata"]["annotations"]
    # The user's own annotation wins over the chart's upload default (2g).
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "5g"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"secretName": "videoflix-tls", "hosts": ["api.videoflix.example.com"]}
    ]
    [rule] = ingress["spec"]["rules"]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"].endswith("-api")


def test_helm_test_pod_calls_ready(default_objects: list[Obj]) -> None:
    pod = find(default_objects, "Pod", "-test-ready")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = find(default_objects, "Service", "-api")
    assert pod["spec"]["containers"][0]["command"][-1] == (
        f"http://{service['metadata']['name']}:80/ready"
    )


def settings_env_names(settings_cls: Any) -> set[str]:
    prefix = settings_cls.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in settings_cls.model_fields}


@pytest.mark.parametrize("values", [DEFAULT, FULL], ids=lambda p: p.stem)
def test_api_env_is_exactly_the_api_settings(values: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from videoflix_api.config import Settings

    objects = render([values])
    [container] = pod_spec(find(objects, "Deployment", "-api"))["containers"]
    names = {n for n in container_env(container) if n.startswith("VIDEOFLIX_")}
    assert names - settings_env_names(Settings) == set(), "env the API does not read"
    env = resolve_env(container, objects)
    for key in list(__import__("os").environ):
        if key.startswith("VIDEOFLIX_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # refuses dev defaults outside dev mode: the chart must give real ones
    assert settings.dev_mode is False
    assert settings.namespace == NAMESPACE
    assert settings.s3_bucket == "media"
    assert settings.secret_key.get_secret_value() == env["VIDEOFLIX_SECRET_KEY"]
    transcoder = yaml.safe_load(values.read_text()).get("transcoder", {})
    assert settings.transcode_strategy == transcoder.get("strategy", "PerRendition")


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_operator_env_is_exactly_the_operator_settings(
    values: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from videoflix_operator.config import OperatorSettings

    objects = render([values])
    [container] = pod_spec(find(objects, "Deployment", "-operator"))["containers"]
    names = {n for n in container_env(container) if n.startswith("VIDEOFLIX_")}
    assert names - settings_env_names(OperatorSettings) == set(), "env the operator does not read"
    plain = {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}
    for key, value in plain.items():
        monkeypatch.setenv(key, value)
    settings = OperatorSettings()
    chart_values = yaml.safe_load(values.read_text())
    transcoder = chart_values.get("transcoder", {})
    assert settings.job_service_account.endswith("-transcoder")
    assert settings.liveness_port == 8080 and settings.metrics_port == 9090
    assert settings.max_running_jobs == transcoder.get("maxRunningJobs", 4)
    if transcoder.get("ladder"):
        assert [(r.name, r.height) for r in settings.ladder_rungs()] == [
            (r["name"], r["height"]) for r in transcoder["ladder"]
        ]
        assert settings.ladder and settings.ladder[1].video_bitrate == 1200
    assert settings.resources_for("1080p")["limits"]["memory"] == "2Gi"
    assert settings.resources_for("probe")["requests"]["cpu"] == "250m"
    image = transcoder.get("image", {})
    repository = image.get("repository", "ghcr.io/videoflix/videoflix-transcoder")
    assert settings.transcoder_image == f"{repository}:{image.get('tag', '0.1.0')}"
    # Where Job pods run: the chart's values, loaded and validated by the operator's settings.
    pull_secrets = transcoder.get("imagePullSecrets") or chart_values.get("imagePullSecrets", [])
    assert [s.manifest() for s in settings.job_image_pull_secrets] == pull_secrets
    assert settings.job_node_selector == transcoder.get("nodeSelector", {})
    assert [t.manifest() for t in settings.job_tolerations] == transcoder.get("tolerations", [])
    assert settings.job_affinity == transcoder.get("affinity", {})
    assert settings.job_priority_class_name == transcoder.get("priorityClassName", "")


def test_job_pod_scheduling_values_reach_the_operators_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from videoflix_core.status import PROBE
    from videoflix_core.transcode import VideoTranscodeSpec
    from videoflix_operator.builders import Owner, build_job
    from videoflix_operator.config import OperatorSettings

    toleration = {
        "key": "spot",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 30,
    }
    objects = render(
        [DEFAULT],
        {
            "imagePullSecrets": [{"name": "global-regcred"}],
            "transcoder.nodeSelector": {"pool": "transcode"},
            "transcoder.tolerations": [toleration],
            "transcoder.priorityClassName": "batch",
        },
    )
    [container] = pod_spec(find(objects, "Deployment", "-operator"))["containers"]
    for e in container["env"]:
        if "value" in e:
            monkeypatch.setenv(e["name"], str(e["value"]))
    assert "VIDEOFLIX_JOB_AFFINITY" not in container_env(container)  # unset values stay unset
    spec = VideoTranscodeSpec.model_validate(
        {"videoId": 1, "source": {"bucket": "media", "key": "videos/1/source/a.mp4"}}
    )
    job = build_job(
        owner=Owner(name="video-1", namespace=NAMESPACE, uid="u"),
        spec=spec,
        spec_hash="h",
        step=PROBE,
        rungs=[],
        settings=OperatorSettings(),
    )
    pod = job["spec"]["template"]["spec"]
    # No transcoder-specific pull secrets: the chart-wide ones apply to Job pods too.
    assert pod["imagePullSecrets"] == [{"name": "global-regcred"}]
    assert pod["nodeSelector"] == {"pool": "transcode"}
    assert pod["tolerations"] == [toleration]
    assert pod["priorityClassName"] == "batch"
    assert "affinity" not in pod


def test_api_gets_the_transcode_strategy() -> None:
    objects = render([DEFAULT], {"transcoder.strategy": "SinglePass"})
    [container] = pod_spec(find(objects, "Deployment", "-api"))["containers"]
    assert container_env(container)["VIDEOFLIX_TRANSCODE_STRATEGY"]["value"] == "SinglePass"


def test_operator_deployment_is_a_single_recreated_pod(default_objects: list[Obj]) -> None:
    operator = find(default_objects, "Deployment", "-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    [container] = pod_spec(operator)["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    health = next(p for p in container["ports"] if p["name"] == "health")
    assert f"--liveness=http://0.0.0.0:{health['containerPort']}/healthz" in container["command"]
    assert f"--namespace={NAMESPACE}" in container["command"]


def test_job_pods_get_the_s3_secret_in_their_namespace() -> None:
    objects = render([DEFAULT], {"config.transcodeNamespace": "jobs"})
    [container] = pod_spec(find(objects, "Deployment", "-operator"))["containers"]
    name = container_env(container)["VIDEOFLIX_S3_SECRET_NAME"]["value"]
    copies = {
        o["metadata"]["namespace"]: o["stringData"]
        for o in find_all(objects, "Secret")
        if o["metadata"]["name"] == name
    }
    assert set(copies) == {NAMESPACE, "jobs"}
    for data in copies.values():
        # Job pods load it with envFrom: the keys are the transcoder's env names.
        assert data == {
            "VIDEOFLIX_S3_REGION": "us-east-1",
            "VIDEOFLIX_S3_ENDPOINT_URL": "http://minio:9000",
            "VIDEOFLIX_S3_ACCESS_KEY_ID": "videoflix",
            "VIDEOFLIX_S3_SECRET_ACCESS_KEY": "change-me-change-me",
        }
    sa = find(objects, "ServiceAccount", "-transcoder")
    assert sa["metadata"]["namespace"] == "jobs"


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(default_objects: list[Obj]) -> None:
    job = find(default_objects, "Job", "-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    [container] = pod_spec(job)["containers"]
    assert container["command"] == ["python", "-m", "videoflix_core.db.migrate"]
    ref = container_env(container)["VIDEOFLIX_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    # The release's own Secret does not exist yet before install: the hook brings its own,
    # created before the Job (lower weight).
    secret = next(
        o for o in find_all(default_objects, "Secret") if o["metadata"]["name"] == ref["name"]
    )
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    sa = find(default_objects, "ServiceAccount", "-migrations")
    assert sa["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert pod_spec(job)["serviceAccountName"] == sa["metadata"]["name"]


def test_the_rendered_migration_command_migrates_a_real_database(database_url: str) -> None:
    objects = render([DEFAULT], {"config.database.url": database_url})
    job = find(objects, "Job", "-migrations")
    [container] = pod_spec(job)["containers"]
    env = resolve_env(container, objects)
    result = subprocess.run(
        [sys.executable, *container["command"][1:]],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    from sqlalchemy import create_engine, inspect

    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"alembic_version", "videos"} <= tables


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        (
            {"config.database.url": ""},
            "set config.database.url or config.database.existingSecret.name",
        ),
        ({"config.jwt.secret": ""}, "set config.jwt.secret"),
        ({"config.jwt.secret": "too-short"}, "config.jwt.secret must be at least 32 characters"),
        (
            {"config.s3.accessKeyId": "", "config.s3.secretAccessKey": ""},
            "S3 credentials are required",
        ),
        ({"config.s3.bucket": ""}, "config.s3.bucket is required"),
        ({"config.smtp.host": ""}, "config.smtp.host is required"),
        ({"config.smtp.username": "mailer"}, "config.smtp.username is set but no password"),
        ({"config.frontendUrl": ""}, "config.frontendUrl is required"),
        ({"config.publicBaseUrl": ""}, "config.publicBaseUrl is required"),
        ({"config.smtp.useTls": True}, "startTls and config.smtp.useTls exclude each other"),
    ],
    ids=[
        "database",
        "jwt",
        "short-jwt",
        "s3-keys",
        "bucket",
        "smtp",
        "smtp-password",
        "frontend",
        "public-url",
        "smtp-tls",
    ],
)
def test_install_fails_with_a_clear_message_when_a_secret_is_missing(
    unset: dict[str, str], message: str
) -> None:
    with pytest.raises(HelmError) as error:
        render([DEFAULT], unset)
    assert message in error.value.stderr


def test_chart_defaults_alone_do_not_install() -> None:
    """No default secrets: without the operator's own values, nothing renders."""
    with pytest.raises(HelmError) as error:
        render()
    assert "videoflix:" in error.value.stderr


def test_existing_secrets_leave_no_secret_value_in_the_release() -> None:
    objects = render([EXISTING])
    secrets = find_all(objects, "Secret")
    # Only the S3 settings Secret (region; keys come from IRSA) is chart-made.
    assert all(set(s["stringData"]) == {"VIDEOFLIX_S3_REGION"} for s in secrets)
    api = pod_spec(find(objects, "Deployment", "-api"))["containers"][0]
    env = container_env(api)
    assert env["VIDEOFLIX_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "videoflix-db",
        "key": "url",
    }
    assert env["VIDEOFLIX_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "videoflix-auth",
        "key": "signing-key",
    }
    assert env["VIDEOFLIX_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "videoflix-smtp"
    assert "VIDEOFLIX_S3_ACCESS_KEY_ID" not in env  # the pod identity provides them
    operator = container_env(pod_spec(find(objects, "Deployment", "-operator"))["containers"][0])
    assert "VIDEOFLIX_S3_ACCESS_KEY_ID" not in operator
    # Without keys the operator must still know it has storage, or cleanup silently does nothing.
    assert operator["VIDEOFLIX_S3_AMBIENT_CREDENTIALS"]["value"] == "true"
    migration = pod_spec(find(objects, "Job", "-migrations"))["containers"][0]
    assert container_env(migration)["VIDEOFLIX_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "videoflix-db",
        "key": "url",
    }
    sa = find(objects, "ServiceAccount", "-api")
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]


def test_a_changed_secret_rolls_the_pods(default_objects: list[Obj]) -> None:
    changed = render([DEFAULT], {"config.jwt.secret": "f" * 40})
    for name in ("-api", "-operator"):
        before = find(default_objects, "Deployment", name)["spec"]["template"]["metadata"]
        after = find(changed, "Deployment", name)["spec"]["template"]["metadata"]
        assert before["annotations"]["checksum/secret"] != after["annotations"]["checksum/secret"]


def operator_rules() -> list[Obj]:
    out = subprocess.run(
        [sys.executable, "-m", "videoflix_operator.rbac"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rules: list[Obj] = yaml.safe_load(out)
    return rules


@pytest.mark.parametrize(("scope", "kind"), [("namespace", "Role"), ("cluster", "ClusterRole")])
def test_operator_rbac_is_exactly_the_operator_table(scope: str, kind: str) -> None:
    objects = render([DEFAULT], {"operator.watchScope": scope})
    role = find(objects, kind, "-operator")
    assert role["rules"] == operator_rules()
    binding = find(objects, f"{kind}Binding", "-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": kind,
        "name": role["metadata"]["name"],
    }
    [subject] = binding["subjects"]
    operator = find(objects, "Deployment", "-operator")
    assert subject["name"] == pod_spec(operator)["serviceAccountName"]
    other = "ClusterRole" if kind == "Role" else "Role"
    assert not [r for r in find_all(objects, other) if r["metadata"]["name"].endswith("-operator")]
    # Nothing cluster-wide unless asked for.
    if scope == "namespace":
        assert not find_all(objects, "ClusterRole") and not find_all(objects, "ClusterRoleBinding")
    command = pod_spec(operator)["containers"][0]["command"]
    assert ("--all-namespaces" in command) is (scope == "cluster")


def test_job_pods_have_no_api_rights(ci_objects: list[Obj]) -> None:
    sa = find(ci_objects, "ServiceAccount", "-transcoder")
    assert sa["automountServiceAccountToken"] is False
    for binding in find_all(ci_objects, "RoleBinding") + find_all(ci_objects, "ClusterRoleBinding"):
        assert all(s["name"] != sa["metadata"]["name"] for s in binding["subjects"])


def test_api_role_only_touches_videotranscodes(default_objects: list[Obj]) -> None:
    role = find(default_objects, "Role", "-api")
    assert [(r["apiGroups"], r["resources"]) for r in role["rules"]] == [
        (["videoflix.io"], ["videotranscodes"])
    ]


def test_network_policy_selects_the_operators_job_pods(default_objects: list[Obj]) -> None:
    from videoflix_core.transcode import VideoTranscodeSpec
    from videoflix_operator.builders import labels

    spec = VideoTranscodeSpec.model_validate(
        {"videoId": 7, "source": {"bucket": "media", "key": "videos/7/source/a.mp4"}}
    )
    policy = find(default_objects, "NetworkPolicy", "-transcoder")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for step in ("probe", "thumbnail", "rendition:720p"):
        assert selector.items() <= labels("video-7", spec, "abc123", step).items()
    assert policy["spec"]["ingress"] == []
    egress_ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert sorted(egress_ports) == [53, 53, 443]  # DNS and S3, nothing else


def test_api_policy_reaches_database_s3_smtp_and_apiserver(default_objects: list[Obj]) -> None:
    policy = find(default_objects, "NetworkPolicy", "-api")
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {53, 5432, 443, 587, 465, 25, 6443}
    narrowed = find(render([FULL]), "NetworkPolicy", "-api")
    sources = narrowed["spec"]["ingress"][0]["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in sources


def test_crd_template_is_the_generated_crd(default_objects: list[Obj]) -> None:
    source = yaml.safe_load((REPO / "crds" / "videotranscodes.yaml").read_text())
    crd = find(default_objects, "CustomResourceDefinition")
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["name"] == source["metadata"]["name"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert (CHART / "files" / "crds" / "videotranscodes.yaml").read_text() == (
        REPO / "crds" / "videotranscodes.yaml"
    ).read_text(), "run `python charts/sync.py`"


def test_crd_switches() -> None:
    assert not find_all(render([DEFAULT], {"crds.enabled": False}), "CustomResourceDefinition")
    crd = find(render([DEFAULT], {"crds.keep": False}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def test_generated_chart_files_are_current() -> None:
    sync = load_sync()
    assert sync.undocumented(sync.read_values((CHART / "values.yaml").read_text())) == []
    assert [p.name for p in sync.stale_files()] == [], "run `python charts/sync.py`"


def test_schema_refuses_unknown_keys_and_bad_values() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"api.replicaCont": 3}, "replicaCont"),
        ({"operator.watchScope": "everything"}, "watchScope"),
        ({"transcoder.ladder": [{"name": "huge", "height": 100000}]}, "ladder"),
        ({"config.cookies.sameSite": "sometimes"}, "sameSite"),
        ({"transcoder.strategy": "Parallel"}, "strategy"),
        ({"transcoder.imagePullSecrets": ["regcred"]}, "imagePullSecrets"),
        ({"transcoder.priorityClassName": "Not Valid"}, "priorityClassName"),
    ]
    for values, message in cases:
        with pytest.raises(HelmError) as error:
            render([DEFAULT], values)
        assert message in error.value.stderr


def test_every_value_is_documented_in_schema_and_readme() -> None:
    sync = load_sync()
    values = sync.read_values((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    for path in values.docs:
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        assert node["description"], path
        assert f"| `{path}` |" in readme


def test_monitoring_objects_behind_values(default_objects: list[Obj]) -> None:
    assert not find_all(default_objects, "ServiceMonitor")
    assert not find_all(default_objects, "PrometheusRule")
    objects = render([FULL])
    monitors = find_all(objects, "ServiceMonitor")
    assert len(monitors) == 2
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
    rule = find(objects, "PrometheusRule")
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    # Each alert's behaviour is tested by promtool in tests/ops/test_rules.py.
    assert set(alerts) >= {
        "VideoflixTranscodesFailing",
        "VideoflixTranscodeQueueGrowing",
        "VideoflixApi5xx",
        "VideoflixOperatorDown",
    }
    # The alerts use metric names the code really exports.
    from videoflix_operator import metrics

    assert "videoflix_jobs_failed_total" in alerts["VideoflixTranscodesFailing"]["expr"]
    assert metrics.JOBS_FAILED._name == "videoflix_jobs_failed"
    assert metrics.QUEUE_DEPTH._name == "videoflix_queue_depth"
    assert "videoflix_http_requests_total" in alerts["VideoflixApi5xx"]["expr"]
    dashboard = find(objects, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["videoflix.json"])["uid"] == "videoflix"


def test_app_version_is_the_packages_version() -> None:
    """Images default to the appVersion tag: it must be the version the images contain."""
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for member in ("api", "operator", "transcoder-image"):
        project = tomllib.loads((REPO / member / "pyproject.toml").read_text())["project"]
        assert project["version"] == chart["appVersion"], member
