"""Shared helpers and fixtures of the Helm chart tests (tests/test_helm_*.py): the chart rendered by
the real Helm engine (libhelm, from helm-python-sdk) with default values and with every optional
object on, and lookups among the rendered objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

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
