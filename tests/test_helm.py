"""The Helm chart (helm/surge), rendered by the real Helm engine (libhelm, from helm-python-sdk):
strict lint, every manifest valid against the Kubernetes schemas (kubernetes-validate) or, for
the prometheus-operator kinds, against that project's own models; the values schema refuses bad
values; the server configuration the chart writes is one `surge server` accepts."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from common.serverconfig import load_config
from common.sshlib import asyncssh

CHART = Path(__file__).resolve().parent.parent / "helm" / "surge"
DATA = Path(__file__).resolve().parent / "data"
KUBE_VERSION = "1.34.0"  # a recent release kubernetes-validate ships schemas for
RELEASE, NAMESPACE = "demo", "transfer"
WORKER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1dPx6V6n2Yx3c0a7m4Q1Jt3kq6f6m2m7kQ2eJm8o1b worker"
)

# Every optional object on: HPA on CPU and queue depth, PDB, NetworkPolicy, ServiceMonitor,
# PodMonitor, the dashboard ConfigMap, tokens, users, persistence, LoadBalancers, extra labels.
FULL: dict[str, Any] = {
    "commonLabels": {"team": "storage"},
    "commonAnnotations": {"owner": "storage-team"},
    "imagePullSecrets": [{"name": "registry"}],
    "cluster": {
        "sshKey": {
            "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----"
        },
        "source": {"existingClaim": "surge-source"},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
    },
    "worker": {
        "autoscaling": {"enabled": True, "queueDepth": {"enabled": True}},
        "pdb": {"enabled": True, "maxUnavailable": "25%"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
    },
    "server": {
        "authorizedKeys": [WORKER_KEY],
        "tokenSecret": {"enabled": True, "value": "00112233445566778899aabbccddeeff"},
        "config": {
            "defaults": {
                "cipher": "aes128",
                "targetRateCap": "10g",
                "minRateDefault": 0,
                "filters": ["- *.tmp"],
                "datagramSize": 1400,
            },
            "users": {
                "alice": {
                    "docroot": "/srv/surge/alice",
                    "directions": ["push"],
                    "authorizedKeys": [WORKER_KEY],
                },
                "backup": {
                    "restrictions": ["/srv/surge/backup"],
                    "policies": ["low"],
                    "defaultPolicy": "low",
                },
            },
        },
        "service": {
            "ssh": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"]},
            "udp": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
        },
    },
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}, "scrapeTimeout": "10s"},
        "podMonitor": {"enabled": True},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Surge"}},
    },
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
}
EXTERNAL_REDIS: dict[str, Any] = {
    "redis": {"enabled": False},
    "externalRedis": {
        "host": "redis.example.internal",
        "port": 6380,
        "db": 2,
        "tls": True,
        "auth": {"existingSecret": "broker", "existingSecretPasswordKey": "pw"},
    },
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders with `values` (NOTES.txt left out)."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for name, text in sorted(files.items()):
        if name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = find(docs, kind, name)
    return doc


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def full_docs() -> list[dict[str, Any]]:
    return render(FULL)


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


# -- the server configuration is one `surge server` loads --------------------------------------------


def _server_files(docs: list[dict[str, Any]], root: Path) -> Path:
    """Write the ConfigMap's TOML and the Secrets' files where the pod would mount them, under
    `root`; returns the configuration file."""
    toml = one(docs, "ConfigMap", "demo-surge-server")["data"]["surge.toml"]
    secret = one(docs, "Secret", "demo-surge-server")["data"]
    mounts = {
        "host-key/ssh_host_key": "ssh_host_key",
        "keys/authorized_keys": "authorized_keys",
        "token/token-secret": "token-secret",
    }
    for path, key in mounts.items():
        if key in secret:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(base64.b64decode(secret[key]))
    config = root / "config" / "surge.toml"
    config.parent.mkdir()
    config.write_text(toml.replace("/etc/surge/", f"{root}/"))
    return config


def test_default_server_config_loads(default_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    config = load_config(_server_files(default_docs, tmp_path))
    assert (
        config.ssh_port == 33001
        and config.udp_ports == (33001, 33020)
        and config.max_sessions == 20
    )
    assert config.defaults.docroot == "/srv/surge"
    # The generated host key is one the SSH server can use.
    key = asyncssh.read_private_key(str(config.host_key).replace("/etc/surge", str(tmp_path)))
    assert key.get_algorithm().startswith("ecdsa-sha2-")


def test_full_server_config_loads_with_users_and_tokens(
    full_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = load_config(_server_files(full_docs, tmp_path))
    assert config.token_secret == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert config.defaults.datagram_size == 1400 and config.defaults.target_rate_cap_bps == 10**10
    alice, backup = config.user("alice"), config.user("backup")
    assert alice.docroot == "/srv/surge/alice" and alice.directions == frozenset({"push"})
    assert alice.authorized_keys == (WORKER_KEY,)
    assert backup.restrictions == ("/srv/surge/backup",) and backup.default_policy == "low"
    assert (tmp_path / "keys" / "authorized_keys").read_text() == WORKER_KEY + "\n"


def test_every_cipher_the_schema_allows_is_one_the_server_accepts(tmp_path: Path) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = schema["properties"]["server"]["properties"]["config"]["properties"]["defaults"]
    ciphers = defaults["properties"]["cipher"]["enum"]
    for cipher in ciphers:
        docs = render({"server": {"config": {"defaults": {"cipher": cipher}}}})
        assert load_config(_server_files(docs, tmp_path / cipher)).defaults.cipher.setting == cipher


# -- the values schema ---------------------------------------------------------------------------


def _nested(path: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("worker.replicaCount", -1, "minimum"),
        ("worker.replicaCount", "two", "integer"),
        ("worker.concurrency", 0, "minimum"),
        ("worker.replicas", 3, "additional"),
        ("worker.queues", ["surge.huge"], "surge.small"),
        ("worker.autoscaling.queueDepth.queues", ["medium"], "small"),
        ("server.config.defaults.cipher", "aes512", "aes128"),
        ("server.config.defaults.directions", ["sideways"], "push"),
        ("server.config.defaults.datagramSize", 100, "datagramSize"),
        ("server.config.defaults.targetRateCap", "fast", "pattern"),
        ("server.config.defaults.docroot", "relative/dir", "pattern"),
        ("server.config.users", {"bad user": {}}, "bad user"),
        ("server.udpPorts.first", 70000, "maximum"),
        ("server.service.udp.type", "NodePort", "LoadBalancer"),
        ("server.authorizedKeys", ["not a key"], "pattern"),
        ("image.pullPolicy", "Sometimes", "IfNotPresent"),
        ("redis.auth.password", "p@ss word", "pattern"),
        ("metrics.serviceMonitor.interval", "often", "pattern"),
        ("networkPolicy.enabled", "yes", "boolean"),
    ],
)
def test_schema_rejects_bad_values(path: str, value: Any, message: str) -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match=message):
            chart.validate_schema(_nested(path, value))
        with pytest.raises(helm.HelmError):
            chart.render(_nested(path, value), name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_the_full_values() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(FULL)
        chart.validate_schema(EXTERNAL_REDIS)


# -- values.yaml documents every value -------------------------------------------------------------


def _leaves(tree: dict[str, Any], documented: set[str], prefix: str = "") -> list[str]:
    """Paths of values neither documented nor inside a documented object."""
    missing = []
    for key, value in tree.items():
        path = prefix + key
        if path in documented:
            continue
        if isinstance(value, dict) and value:
            missing += _leaves(value, documented, path + ".")
        else:
            missing.append(path)
    return missing


def test_values_yaml_documents_every_value() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, re.M))
    values = yaml.safe_load(text)
    assert _leaves(values, documented) == []

    def exists(path: str) -> bool:
        node: Any = values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    assert [p for p in documented if not exists(p)] == []
    assert "## @section" in text


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
