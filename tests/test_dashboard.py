"""The Grafana dashboard (helm/surge/dashboards/surge.json, also used by docker-compose) queries
only what Surge exposes: every metric, label and label value in its PromQL exists in the
exposition of a running Surge process; every query parses (promtool); every Surge metric has a
panel."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from prometheus_tools import ensure_prometheus, ensure_promtool

from common.sshlib import asyncssh

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "helm" / "surge" / "dashboards" / "surge.json"
TARGET_LABELS = {"job", "instance"}  # added by Prometheus at scrape time
# Grafana's variables, as Grafana substitutes them before the query reaches Prometheus.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$job": ".*", "$instance": ".*"}

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are neither functions
    (followed by '('), keywords, grouping labels, label matchers nor durations; plus any
    `{__name__="..."}`."""
    names = {
        json.loads(v)
        for label, op, v in _MATCHER.findall(expr)
        if label == "__name__" and op == "="
    }
    text = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    for match in _IDENT.finditer(text):
        word, rest = match.group(), text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # the unit of a duration or the exponent of a number (5m, 1e3)
        names.add(word)
    return names


def selectors(expr: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, op, value)]) for each `metric{...}` of an expression."""
    for name, body in _SELECTOR.findall(expr):
        if name:
            yield (
                name,
                [(label, op, json.loads(value)) for label, op, value in _MATCHER.findall(body)],
            )


def grouping_labels(expr: str) -> set[str]:
    return {
        label.strip()
        for _, body in _GROUPING.findall(expr)
        for label in body.split(",")
        if label.strip()
    }


# -- the extractor itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("surge_rtt_seconds", {"surge_rtt_seconds"}),
        (
            'sum by (instance) (rate(surge_sent_bytes_total{job=~"$job"}[$__rate_interval]))',
            {"surge_sent_bytes_total"},
        ),
        (
            'histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket{a="b"}[5m])))',
            {"x_seconds_bucket"},
        ),
        ("a_total / ignoring(reason) group_left b_total offset 5m", {"a_total", "b_total"}),
        ('count({__name__="surge_build_info"}) > 1e3 and on(job) up', {"surge_build_info", "up"}),
        ("sum without (state) (increase(surge_files_total[1h:5m]))", {"surge_files_total"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)") > bool 0.5', {"m"}),
        (
            'surge_tasks{state="by (x)", queue=~"a|b"} unless surge_jobs_active',
            {"surge_tasks", "surge_jobs_active"},
        ),
    ],
)
def test_metric_names_of_examples(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,10}_(total|bucket|bytes|seconds)", fullmatch=True).filter(
    lambda n: n.split("_")[0] not in _KEYWORDS
)


@st.composite
def _expression(draw: st.DrawFn) -> tuple[str, set[str]]:
    name = draw(_NAME)
    expr = name + draw(st.sampled_from(["", '{job=~"$job"}', '{state="failed",le!="+Inf"}']))
    if draw(st.booleans()):
        expr = f"{draw(st.sampled_from(['rate', 'increase', 'irate']))}({expr}[{draw(st.sampled_from(['5m', '$__rate_interval', '1h:1m']))}])"
    if draw(st.booleans()):
        expr = f"{draw(st.sampled_from(['sum', 'max', 'count']))} by ({draw(_NAME)}, instance) ({expr})"
    if draw(st.booleans()):
        other, names = draw(_expression())
        return (
            f"{expr} {draw(st.sampled_from(['/', '+', 'and', '> bool', 'or on(job)']))} {other}",
            {name} | names,
        )
    return expr, {name}


@given(_expression())
def test_metric_names_of_generated_expressions(case: tuple[str, set[str]]) -> None:
    expr, names = case
    assert metric_names(expr) == names


# -- a running Surge process -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_has_metrics_port() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "server", "-h"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    return "--metrics-port" in out.stdout


def _command(tmp: Path, port: int) -> list[str]:
    """`surge server --metrics-port` when this Surge has it, else a process that serves the
    registry of common.metrics the way every Surge process does (serve_metrics)."""
    if not _server_has_metrics_port():
        code = "import sys, time; from common.metrics import serve_metrics; serve_metrics(int(sys.argv[1]), '127.0.0.1'); time.sleep(120)"
        return [sys.executable, "-c", code, str(port)]
    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp / "host_key").write_bytes(key.export_private_key())
    (tmp / "docroot").mkdir()
    udp = _free_port()
    return [
        sys.executable,
        "-m",
        "coordinator.cli",
        "server",
        "--listen",
        "127.0.0.1",
        "--ssh-port",
        str(_free_port()),
        "--udp-port",
        f"{udp}-{udp}",
        "--host-key",
        str(tmp / "host_key"),
        "--docroot",
        str(tmp / "docroot"),
        "--metrics-port",
        str(port),
    ]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def _start(argv: list[str], log: Path, ready_url: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a process and wait until `ready_url` answers; the caller stops it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    for _ in range(300):
        try:
            _get(ready_url)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{argv[0]} exited: {log.read_text(errors='replace')[-2000:]}"
                ) from None
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"{argv[0]} never answered {ready_url}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def surge_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of the metrics of a running Surge process."""
    port = _free_port()
    tmp = tmp_path_factory.mktemp("surge")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = _start(
        _command(tmp, port), tmp / "log", f"http://127.0.0.1:{port}/metrics", cwd=ROOT, env=env
    )
    yield f"127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="module")
def exposition(surge_metrics: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> label sets, scraped over HTTP from the running Surge process."""
    text = _get(f"http://{surge_metrics}/metrics").decode()
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


def _panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from _panels(panel)


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels(dash) for t in p.get("targets", []) if t.get("expr")]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs.append(re.fullmatch(r"label_values\((?:(.+), )?\w+\)", query).group(1))
    return exprs


def test_the_dashboard_has_queries() -> None:
    assert len(dashboard_queries()) >= 30


def test_every_queried_metric_is_exposed(exposition: dict[str, list[dict[str, str]]]) -> None:
    for expr in dashboard_queries():
        names = metric_names(expr)
        assert names, expr
        missing = names - set(exposition)
        assert not missing, f"{expr}: {sorted(missing)} not in the exposition of a Surge process"


def test_every_label_and_value_queried_exists(exposition: dict[str, list[dict[str, str]]]) -> None:
    for expr in dashboard_queries():
        labels_seen = set(TARGET_LABELS)
        for name, matchers in selectors(expr):
            series = exposition[name]
            labels_seen |= {label for labels in series for label in labels}
            for label, op, value in matchers:
                if label in TARGET_LABELS:
                    continue
                assert any(label in labels for labels in series), (
                    f"{expr}: {name} has no label {label!r}"
                )
                if op == "=":
                    assert any(labels.get(label) == value for labels in series), (
                        f"{expr}: {name}{{{label}={value!r}}} never exists"
                    )
        assert grouping_labels(expr) <= labels_seen, expr


def test_every_surge_metric_has_a_panel(exposition: dict[str, list[dict[str, str]]]) -> None:
    queried = set().union(*(metric_names(e) for e in dashboard_queries()))
    assert {name for name in exposition if name.startswith("surge_")} - queried == set()


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses every query (as a recording rule), Grafana's variables substituted."""
    rules = []
    for i, expr in enumerate(dashboard_queries()):
        rules.append({"record": f"surge:dashboard:q{i}", "expr": _substituted(expr, "1m")})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(
        [ensure_promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = list(_panels(dash))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel[
                "title"
            ]
            assert panel["targets"] and panel.get("description"), panel["title"]
            x, w = panel["gridPos"]["x"], panel["gridPos"]["w"]
            assert x >= 0 and x + w <= 24, panel["title"]
    assert dash["uid"] == "surge-overview" and dash["templating"]["list"][0]["type"] == "datasource"


def _substituted(expr: str, rate_interval: str) -> str:
    values = {**GRAFANA_VARS, "$__rate_interval": rate_interval}
    for var, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def test_every_query_returns_data_from_a_real_prometheus(
    surge_metrics: str, tmp_path: Path
) -> None:
    """A real Prometheus scrapes the running Surge process every 0.5 s; each panel's query then
    evaluates without error and, on this idle process, returns series (counters are 0, so
    rates are 0), except a ratio that filters out idle denominators (`> 0`)."""
    port = _free_port()
    config = {
        "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
        "scrape_configs": [{"job_name": "surge", "static_configs": [{"targets": [surge_metrics]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    argv = [
        ensure_prometheus(),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = _start(argv, tmp_path / "log", f"http://127.0.0.1:{port}/-/ready")
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query?query="
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # two scrapes at least, so that rate() has samples
            result = json.loads(_get(api + urllib.parse.quote("count_over_time(up[1m])")))["data"][
                "result"
            ]
            if result and float(result[0]["value"][1]) >= 3:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("Prometheus never scraped the Surge process")
        for expr in dashboard_queries():
            answer = json.loads(_get(api + urllib.parse.quote(_substituted(expr, "5s"))))
            assert answer["status"] == "success", (expr, answer)
            if "> 0)" not in expr:
                assert answer["data"]["result"], f"no series: {expr}"
    finally:
        _stop(proc)
