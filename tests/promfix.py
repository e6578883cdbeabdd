"""Real Prometheus tooling for the metrics tests of every Surge endpoint (server, worker,
coordinator):

* :func:`promtool_check`: ``promtool check metrics`` on an exposition (fails the test with
  promtool's complaints);
* :func:`prometheus_scrapes`: a real ``prometheus`` server (free port, configuration and TSDB in
  a temporary directory, 1 s scrape interval) scraping the given targets; ``.query(expr)`` asks
  its HTTP API, ``.wait_for(expr)`` until a scrape has produced a result;
* :func:`scrape`: one GET of ``/metrics``, parsed (:func:`parse`) into
  ``{(name, labels): value}``; :func:`sample` picks one series.

Both binaries come from Debian's ``prometheus`` package, installed with apt-get when missing
(tests/prometheus_tools.py); when that is impossible the test fails.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import prometheus_tools
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "Prometheus",
    "ensure_prometheus",
    "parse",
    "prometheus_scrapes",
    "promtool_check",
    "sample",
    "scrape",
]

_READY_SECONDS = 30.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def ensure_prometheus() -> None:
    """promtool and the prometheus server, from PATH or installed (tests/prometheus_tools.py)."""
    prometheus_tools.ensure_promtool()
    prometheus_tools.ensure_prometheus()


def promtool_check(text: str | bytes) -> None:
    """`promtool check metrics` must accept the exposition without a single complaint."""
    ensure_prometheus()
    data = text.encode() if isinstance(text, str) else text
    p = subprocess.run(
        ["promtool", "check", "metrics"], input=data, capture_output=True, timeout=60
    )
    problems = (p.stdout + p.stderr).decode(errors="replace").strip()
    assert p.returncode == 0 and not problems, (
        f"promtool check metrics (exit {p.returncode}):\n{problems}"
    )


def scrape(url: str) -> tuple[bytes, Samples]:
    """The raw exposition at `url` and its samples by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers.get_content_type() == "text/plain"
        raw = resp.read()
    return raw, parse(raw)


def parse(raw: bytes) -> Samples:
    """An exposition's samples by (name, sorted labels)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(raw.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError when the series is missing: a bug, not a zero)."""
    return samples[(name, tuple(sorted(labels.items())))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
            body = json.load(resp)
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: the result vector (each item has "metric" labels and "value")."""
        return list(self._get("/api/v1/query", query=expr)["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets")["activeTargets"])

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Query until the result is non-empty (the first scrapes take a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


@contextmanager
def prometheus_scrapes(targets: Sequence[str], *, interval: str = "1s") -> Iterator[Prometheus]:
    """A real Prometheus server scraping `targets` ("host:port", path /metrics) every
    `interval`; stopped and its directory removed on exit."""
    ensure_prometheus()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="surge-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "surge", "static_configs": [{"targets": list(targets)}]}],
        }))  # fmt: skip
        log = Path(tmp) / "prometheus.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                                     f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            prom = Prometheus(f"http://127.0.0.1:{port}")
            _wait_ready(proc, prom.url, log)
            yield prom
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {proc.returncode}: {log.read_text(errors='replace')[-1500:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"prometheus not ready after {_READY_SECONDS:g} s: {log.read_text(errors='replace')[-1500:]}"
    )
