"""The shipped monitoring examples stay valid: the Prometheus alert rules pass promtool's
check and their unit tests, the Grafana dashboard has the shape Grafana imports and its
queries are PromQL. (tests/integration/test_monitoring_names.py checks every metric
they name against a running proxy's /metrics.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import in_ci

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "examples" / "grafana" / "sipdispatch.json"
ALERTS = ROOT / "examples" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "examples" / "prometheus" / "alerts_test.yml"
DOCS = ROOT / "docs" / "monitoring.md"

METRIC_NAME = re.compile(r"\b(?:sipdispatch|process)_[a-zA-Z0-9_]+")
"""A metric name in PromQL: the proxy's own, and prometheus_client's process_* ones."""

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$job": ".*",
    "$instance": ".*",
    "$set": ".*",
}
"""Grafana's variables in the dashboard's queries, and a value each that makes them PromQL."""

SEVERITIES = {"warning", "critical"}


# -- what the examples hold (tests/integration/test_monitoring_names.py uses these too) ------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows left out."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_exprs() -> list[str]:
    """The PromQL of every panel target and of every query variable, as written."""
    board = dashboard()
    exprs = [t["expr"] for p in panels(board) for t in p["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alert_exprs() -> list[str]:
    return [rule["expr"] for rule in alert_rules()]


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced; a variable query
    (``label_values(selector, label)``) becomes its selector."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    label_values = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr)
    return label_values.group(1) if label_values else expr


# -- promtool --------------------------------------------------------------------------------


@pytest.fixture
def promtool() -> str:
    """Path of promtool. Skips without it, except on CI (CI set) where it fails."""
    path = shutil.which("promtool")
    if path is None:
        if in_ci():
            pytest.fail("promtool is not on PATH and CI is set: apt-get install prometheus")
        pytest.skip("promtool is not on PATH (apt-get install prometheus)")
    return path


def run_promtool(promtool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_alert_rules_pass_promtool_check(promtool: str) -> None:
    done = run_promtool(promtool, "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_the_alert_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    done = run_promtool(promtool, "test", "rules", str(ALERTS_TEST))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_is_promql_promtool_accepts(promtool: str, tmp_path: Path) -> None:
    # promtool parses the PromQL of recording rules; JSON is YAML, so no YAML is written.
    rules = [
        {"record": f"sipdispatch:dashboard_query:{i}", "expr": as_promql(expr)}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run_promtool(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_destination_state_timeline_shows_each_state_by_its_value_mapping(
    promtool: str, tmp_path: Path
) -> None:
    """The state-timeline query turns the four state series of a destination into one
    series whose value the panel maps to the state's name."""
    (panel,) = [p for p in panels(dashboard()) if p["title"] == "Destination state"]
    mapping = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    code = {entry["text"]: int(value) for value, entry in mapping.items()}
    assert set(code) == {"active", "trying", "inactive", "disabled"}
    states = {"sip:a": "active", "sip:t": "trying", "sip:i": "inactive", "sip:d": "disabled"}
    series = [
        {
            "series": f'sipdispatch_destination_state{{job="sipdispatch",instance="lb1:5080",'
            f'set="1",uri="{uri}",state="{name}"}}',
            "values": "1" if name == current else "0",
        }
        for uri, current in states.items()
        for name in code
    ]
    expected = [
        {
            "labels": f'{{job="sipdispatch",instance="lb1:5080",set="1",uri="{uri}"}}',
            "value": code[current],
        }
        for uri, current in states.items()
    ]
    test = {
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": as_promql(panel["targets"][0]["expr"]),
                        "eval_time": "0m",
                        "exp_samples": expected,
                    }
                ],
            }
        ],
    }
    path = tmp_path / "state_test.yml"
    path.write_text(json.dumps(test))
    done = run_promtool(promtool, "test", "rules", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the alert rules -------------------------------------------------------------------------


def test_the_alert_rules_are_one_group_named_sipdispatch() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert [g["name"] for g in groups] == ["sipdispatch"]
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)) and all(n.startswith("Sipdispatch") for n in names)


def test_every_alert_has_a_severity_and_a_summary_and_description_naming_its_labels() -> None:
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description"}, name
        for key in ("summary", "description"):
            assert "{{ $labels." in annotations[key], f"{name} {key} names no label"
        assert "{{ $labels.instance }}" in annotations["description"], name


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never fires in a test"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} has no quiet case"
        for case in mine:
            for alert in case["exp_alerts"]:
                assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
                assert set(alert["exp_annotations"]) == set(rule["annotations"])


def test_docs_say_what_every_alert_means_and_what_to_do() -> None:
    text = DOCS.read_text()
    for rule in alert_rules():
        name = rule["alert"]
        assert f"### {name}\n" in text, name
        assert f"| `{name}` | {rule['labels']['severity']} |" in text, name


# -- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_has_what_grafana_imports() -> None:
    board = dashboard()
    assert set(board) >= {"panels", "title", "uid", "schemaVersion", "templating"}
    assert board["title"] == "sipdispatch" and board["uid"] == "sipdispatch"
    assert board["schemaVersion"] >= 36
    # The data source is chosen on import (__inputs), or from the variable of that name
    # when the file is provisioned as it is.
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["datasource"]["uid"] == "${DS_PROMETHEUS}", name


def test_every_dashboard_panel_has_a_prometheus_datasource_a_query_and_a_unit() -> None:
    found = panels(dashboard())
    assert len(found) >= 20
    for panel in found:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert target["datasource"] == panel["datasource"], title
            assert target.get("legendFormat"), title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        if panel["type"] in ("timeseries", "stat"):
            assert panel["fieldConfig"]["defaults"].get("unit"), title
        # Every query follows the job and instance variables.
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], title
            assert 'instance=~"$instance"' in target["expr"], title


def test_dashboard_panel_ids_are_unique() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]] + [
        p["id"] for row in board["panels"] if row["type"] == "row" for p in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids))


def test_dashboard_panels_do_not_overlap_and_fit_the_24_column_grid() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_the_dashboard_covers_calls_destinations_input_cluster_and_workers() -> None:
    board = dashboard()
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [
        "Overview",
        "Calls",
        "Destinations",
        "Rejected and dropped input",
        "Cluster",
        "Workers",
        "Process",
    ]
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    for name in (
        "sipdispatch_destination_calls_total",
        "sipdispatch_call_setup_seconds_bucket",
        "sipdispatch_destination_state",
        "sipdispatch_destination_latency_average_seconds",
        "sipdispatch_destination_calls_active",
        "sipdispatch_sip_parse_errors_total",
        "sipdispatch_requests_refused_total",
        "sipdispatch_requests_flood_dropped_total",
        "sipdispatch_sip_dropped_total",
        "sipdispatch_sip_refused_destinations_total",
        "sipdispatch_cluster_nodes",
        "sipdispatch_cluster_redis_up",
        "sipdispatch_workers",
        "sipdispatch_worker_requests_received_total",
        "sipdispatch_worker_handoffs_total",
    ):
        assert name in used, name
    quantiles = [
        t["expr"] for p in panels(board) if p["title"] == "Call set-up time" for t in p["targets"]
    ]
    assert [re.findall(r"^histogram_quantile\((0\.\d+),", q) for q in quantiles] == [
        ["0.5"],
        ["0.95"],
        ["0.99"],
    ]
    for query in quantiles:
        assert "rate(sipdispatch_call_setup_seconds_bucket{" in query and "[5m]" in query
