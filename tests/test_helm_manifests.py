"""The Helm chart's manifests (helm/surge): strict lint, every manifest valid against the Kubernetes
schemas (kubernetes-validate) or, for the prometheus-operator kinds, against that project's own
models; what the objects say; and the commands they run parse in the real `surge` CLI."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import sys
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helm_helpers import (
    CHART,
    DATA,
    EXTERNAL_REDIS,
    FULL,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    find,
    one,
    render,
)

pytest_plugins = ["helm_helpers"]  # its fixtures


# -- lint and Kubernetes schemas -------------------------------------------------------------------


@pytest.mark.parametrize(
    "values", [None, FULL, EXTERNAL_REDIS], ids=["default", "full", "external-redis"]
)
def test_lint_strict_is_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert report["errors"] == [] and problems == [], report


def _validate_operator_object(doc: dict[str, Any]) -> None:
    """ServiceMonitor/PodMonitor against the schemas of prometheus-operator's CRDs (vendored in
    tests/data, made strict: a field the CRD does not define is an error)."""
    schemas = json.loads((DATA / "prometheus-operator-monitors.schema.json").read_text())
    jsonschema.validate(doc, schemas[doc["kind"]])


@pytest.mark.parametrize(
    "values", [None, FULL, EXTERNAL_REDIS], ids=["default", "full", "external-redis"]
)
def test_every_manifest_is_valid(values: dict[str, Any] | None) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            _validate_operator_object(doc)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_operator_validation_catches_a_bad_field(full_docs: list[dict[str, Any]]) -> None:
    bad = copy.deepcopy(find(full_docs, "ServiceMonitor")[0])
    bad["spec"]["endpoints"][0]["scrapeEvery"] = "5s"
    with pytest.raises(jsonschema.ValidationError, match="scrapeEvery"):
        _validate_operator_object(bad)


def test_full_values_render_every_optional_object(full_docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in full_docs)
    for kind, count in [
        ("Deployment", 3),
        ("StatefulSet", 1),
        ("HorizontalPodAutoscaler", 1),
        ("PodDisruptionBudget", 1),
        ("NetworkPolicy", 3),
        ("ServiceMonitor", 1),
        ("PodMonitor", 1),
        ("PersistentVolumeClaim", 1),
        ("ServiceAccount", 1),
    ]:
        assert kinds.count(kind) == count, (kind, kinds)
    assert {s["metadata"]["name"] for s in find(full_docs, "Secret")} == {
        "demo-surge-redis",
        "demo-surge-server",
        "demo-surge-client-key",
    }


def test_default_values_leave_the_optional_objects_out(default_docs: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in default_docs}
    assert kinds.isdisjoint(
        {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PodMonitor"}
    )
    assert "PodDisruptionBudget" in kinds and "StatefulSet" in kinds
    assert not find(default_docs, "ConfigMap", "demo-surge-dashboard")


# -- what the objects say --------------------------------------------------------------------------


def _pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    ]


def test_every_pod_is_locked_down(full_docs: list[dict[str, Any]]) -> None:
    pods = _pods(full_docs)
    assert len(pods) == 4
    for name, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert (
                sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            ), name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert {"/tmp"} <= {m["mountPath"] for m in c["volumeMounts"]}, name
            assert c["livenessProbe"] and c["readinessProbe"], name
            assert c["resources"]["requests"] and c["resources"]["limits"], name


def test_workers_get_the_broker_url_from_the_secret(default_docs: list[dict[str, Any]]) -> None:
    worker = one(default_docs, "Deployment", "demo-surge-worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    env = container["env"]
    names = [e["name"] for e in env]
    # $(VAR) expansion needs the variable defined earlier in the list.
    assert names.index("SURGE_REDIS_PASSWORD") < names.index("SURGE_BROKER_URL")
    ref = env[names.index("SURGE_REDIS_PASSWORD")]["valueFrom"]["secretKeyRef"]
    url = env[names.index("SURGE_BROKER_URL")]["value"]
    assert url == "redis://:$(SURGE_REDIS_PASSWORD)@demo-surge-redis:6379/0"
    secret = one(default_docs, "Secret", ref["name"])
    password = base64.b64decode(secret["data"][ref["key"]]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert one(default_docs, "Service", "demo-surge-redis")["spec"]["ports"][0]["port"] == 6379
    assert container["args"] == [
        "worker",
        "--metrics-port",
        "9100",
        "--concurrency",
        "2",
        "--queues",
        "surge.small,surge.large,surge.bookkeeping",
    ]


def test_external_redis_uses_the_given_secret_and_tls() -> None:
    docs = render(EXTERNAL_REDIS)
    assert not find(docs, "StatefulSet") and not find(docs, "Secret", "demo-surge-redis")
    env = one(docs, "Deployment", "demo-surge-coordinator")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["SURGE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "broker",
        "key": "pw",
    }
    assert (
        by_name["SURGE_BROKER_URL"]["value"]
        == "rediss://:$(SURGE_REDIS_PASSWORD)@redis.example.internal:6380/2"
    )


def test_external_redis_without_a_password_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"externalRedis\.auth"):
        render({"redis": {"enabled": False}, "externalRedis": {"host": "r"}})


def test_udp_service_publishes_the_whole_range_unrenumbered(
    full_docs: list[dict[str, Any]],
) -> None:
    svc = one(full_docs, "Service", "demo-surge-server-udp")
    ports = svc["spec"]["ports"]
    assert [p["port"] for p in ports] == list(range(33001, 33021))
    assert all(p["targetPort"] == p["port"] and p["protocol"] == "UDP" for p in ports)
    assert svc["spec"]["type"] == "LoadBalancer"
    ssh = one(full_docs, "Service", "demo-surge-server-ssh")
    assert ssh["spec"]["ports"] == [
        {"name": "ssh", "port": 33001, "targetPort": "ssh", "protocol": "TCP"}
    ]
    with pytest.raises(helm.HelmError, match="first must not be greater"):
        render({"server": {"udpPorts": {"first": 33010, "last": 33001}}})


def test_hpa_scales_on_cpu_and_queue_depth(full_docs: list[dict[str, Any]]) -> None:
    hpa = one(full_docs, "HorizontalPodAutoscaler", "demo-surge-worker")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "demo-surge-worker"
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    external = [m["external"] for m in hpa["metrics"] if m["type"] == "External"]
    assert [
        (e["metric"]["name"], e["metric"]["selector"]["matchLabels"]["queue"]) for e in external
    ] == [("surge_queue_messages", "small"), ("surge_queue_messages", "large")]
    worker = one(full_docs, "Deployment", "demo-surge-worker")["spec"]
    assert "replicas" not in worker  # the HPA owns it


def test_dashboard_configmap_carries_the_dashboard_file(full_docs: list[dict[str, Any]]) -> None:
    cm = one(full_docs, "ConfigMap", "demo-surge-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Surge"
    assert json.loads(cm["data"]["surge.json"]) == json.loads(
        (CHART / "dashboards" / "surge.json").read_text()
    )


def test_monitors_select_the_metrics_services(full_docs: list[dict[str, Any]]) -> None:
    sm = find(full_docs, "ServiceMonitor")[0]
    selector = sm["spec"]["selector"]["matchLabels"]
    scraped = [
        s["metadata"]["name"]
        for s in find(full_docs, "Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert sorted(scraped) == [
        "demo-surge-coordinator",
        "demo-surge-server-metrics",
        "demo-surge-worker",
    ]
    assert sm["metadata"]["labels"]["release"] == "kps"
    for name in scraped:
        assert one(full_docs, "Service", name)["spec"]["ports"][0]["name"] == "metrics"


def test_config_change_restarts_the_server(default_docs: list[dict[str, Any]]) -> None:
    def checksum(docs: list[dict[str, Any]]) -> str:
        pod = one(docs, "Deployment", "demo-surge-server")["spec"]["template"]["metadata"]
        return pod["annotations"]["checksum/config"]

    changed = render({"server": {"maxSessions": 7}})
    assert checksum(changed) != checksum(default_docs)
    assert checksum(render()) == checksum(default_docs)


def test_chart_commands_are_accepted_by_the_real_cli(full_docs: list[dict[str, Any]]) -> None:
    """The coordinator and worker arguments the chart writes parse in the real `surge` command:
    with an unreachable broker it stops at the connection (exit 1), not at the options (exit 2)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    for name in ("demo-surge-worker", "demo-surge-coordinator"):
        (container,) = one(full_docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        args = list(container["args"])
        res = subprocess.run([sys.executable, "-m", "coordinator.cli", *args], capture_output=True, text=True,
                             timeout=60, env={**__import__("os").environ, "SURGE_BROKER_URL": dead})  # fmt: skip
        assert res.returncode == 1 and "cannot reach Redis" in res.stderr, (name, args, res.stderr)
