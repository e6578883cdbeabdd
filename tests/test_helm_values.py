"""The Helm chart's values and server configuration (helm/surge): the configuration the chart writes
is one `surge server` loads, the values schema refuses bad values, and values.yaml documents every
value."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from common.serverconfig import load_config
from common.sshlib import asyncssh

sys.path.insert(0, os.path.dirname(__file__))
from helm_helpers import CHART, EXTERNAL_REDIS, FULL, NAMESPACE, RELEASE, WORKER_KEY, one, render

pytest_plugins = ["helm_helpers"]  # its fixtures


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
