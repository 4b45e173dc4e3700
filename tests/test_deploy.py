"""What deploy/ ships works with this code: the systemd units parse and run real commands, the
example configuration loads, and the alert rules and the dashboard ask only for metrics the
gateway exports (checked on a live gateway's /metrics after real traffic)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from prometheus_client.parser import text_string_to_metric_families

from omnirelay.cli import app as cli_app
from omnirelay.config import load_settings
from tests.support import (
    WebhookReceiver,
    create_account,
    make_settings,
    start_live_server,
    wait_until,
)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
INSTALLED_AT = "/opt/omnirelay/venv/bin/omnirelay"  # where docs/production.md installs it
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_SERIES = {"up"}
# Sample names each metric type exposes, as prometheus_client writes them.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _unit_settings(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_both_process_kinds_have_a_unit() -> None:
    commands = [_unit_settings(unit)["ExecStart"][0] for unit in UNITS]
    assert [unit.name for unit in UNITS] == ["omnirelay-api@.service", "omnirelay-worker@.service"]
    assert "serve --no-workers --reuse-port" in commands[0]
    assert " worker " in commands[1]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_command_lines_are_accepted_by_the_cli(unit: Path) -> None:
    argv = shlex.split(_unit_settings(unit)["ExecStart"][0])
    assert argv[0] == INSTALLED_AT
    group = typer.main.get_command(cli_app)
    parent = group.make_context("omnirelay", argv[1:])
    command = group.get_command(parent, argv[1])  # type: ignore[attr-defined]
    assert command is not None, f"{unit.name}: no command {argv[1]!r}"
    # Parses the options as the CLI would, and refuses any it does not know.
    context = command.make_context(argv[1], argv[2:], parent=parent)
    assert context.params["config"] == Path("/etc/omnirelay/omnirelay.toml")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here, so the units cannot be verified")
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    # verify also checks that ExecStart is executable: point it at this environment's CLI.
    installed = Path(sys.executable).with_name("omnirelay")
    assert installed.is_file()
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(INSTALLED_AT, str(installed)))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                            text=True, timeout=60)
    # Unknown keys are only warnings (exit 0), so any line about our unit fails too.
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if unit.name.split("@")[0] in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_example_configuration_loads_in_production_mode() -> None:
    environ = {}
    for line in (DEPLOY / "omnirelay.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            environ[key] = value
    settings = load_settings(DEPLOY / "omnirelay.toml", environ=environ)
    assert settings.is_production
    assert settings.database_url.startswith("postgresql://")
    assert settings.admin.token == environ["OMNIRELAY_ADMIN__TOKEN"]
    assert settings.secret_key == environ["OMNIRELAY_SECRET_KEY"]
    # The CLI wrapper relies on it to find the file the units pass with --config.
    assert environ["OMNIRELAY_CONFIG"] == "/etc/omnirelay/omnirelay.toml"


def test_cli_wrapper_is_valid_shell_for_the_installed_paths() -> None:
    wrapper = DEPLOY / "omnirelay-cli"
    subprocess.run(["sh", "-n", str(wrapper)], check=True, timeout=10)
    text = wrapper.read_text()
    assert INSTALLED_AT in text and "/etc/omnirelay/omnirelay.env" in text


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every query in the alert rules and the dashboard."""
    found: list[tuple[str, str]] = []
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            where = f"dashboard panel {node['title']!r}" if "title" in node else where
            if isinstance(node.get("expr"), str):
                found.append((where, node["expr"]))
            query = node.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            if node.get("type") == "query" and isinstance(query, str):
                found.append((f"dashboard variable {node['name']}", query))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(json.loads((DEPLOY / "grafana-dashboard.json").read_text()), "dashboard")
    return found


def _metric_names(query: str) -> set[str]:
    """Metric names in a PromQL query: our prefix, and any name a selector or range follows."""
    without_strings = re.sub(r'"[^"]*"', '""', query)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    names = set(re.findall(r"\b(omnirelay_\w+)", without_labels))
    names |= set(re.findall(r"\b([a-zA-Z_:][\w:]*)\s*[{\[]", without_labels))
    names |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)", without_labels))
    return names - {"by", "without", "on", "ignoring"}


@pytest.fixture
def scraped(tmp_path: Path) -> tuple[set[str], set[str]]:
    """(sample names /metrics can expose, sample names it did expose) on a live gateway that
    accepted a message, sent it and delivered its report."""
    receiver = WebhookReceiver().start()
    server = start_live_server(make_settings(f"sqlite:///{tmp_path}/omnirelay.db"))
    try:
        account = server.call(create_account(server.runtime))
        with httpx.Client(base_url=server.base_url, timeout=10,
                          auth=(account.api_username, account.api_password)) as client:
            answer = client.post("/v1/omnimessage", json={
                "to": "+37255512345", "dlr_url": receiver.url + "/dlr",
                "messages": [{"channel": "sms", "text": "hello"}]})
            assert answer.status_code == 201, answer.text
            receiver.wait_for(1)

            def delivered() -> str | None:
                text = client.get("/metrics").text
                return text if 'omnirelay_webhooks_total{kind="dlr",result="delivered"}' in text \
                    else None

            exposition = wait_until(delivered)
    finally:
        server.stop()
        receiver.stop()
    possible: set[str] = set()
    seen: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        possible |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        seen |= {sample.name for sample in family.samples}
    return possible, seen


def test_monitoring_files_use_only_exported_metrics(scraped: tuple[set[str], set[str]]) -> None:
    possible, seen = scraped
    # The suffix rule matches what was really exposed (counters as _total, histograms' parts).
    assert {"omnirelay_omnimessages_accepted_total", "omnirelay_webhooks_total",
            "omnirelay_upstream_send_seconds_bucket"} <= seen
    assert seen - {n for n in seen if n.endswith("_created")} <= possible
    queries = _queries()
    assert len(queries) >= 20
    missing = {}
    for where, query in queries:
        names = _metric_names(query)
        assert names, f"{where}: no metric in {query!r}"
        unknown = names - possible - PROMETHEUS_SERIES
        if unknown:
            missing[where] = sorted(unknown)
    assert not missing, missing


def test_metric_name_extraction_sees_every_kind_of_reference() -> None:
    query = ('histogram_quantile(0.99, sum by (le) (rate(omnirelay_x_bucket{job="a{b}"}[5m])))'
             ' / on (instance) up{job="x"} + label_values(foo_bar, job) + baz[5m]')
    assert _metric_names(query) == {"omnirelay_x_bucket", "up", "foo_bar", "baz"}
