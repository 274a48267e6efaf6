"""The Prometheus and Alertmanager configs, checked by the real tools (Debian packages).

``promtool`` and ``amtool`` come from ``prometheus`` and ``prometheus-alertmanager``
(``dev.sh install`` installs them); without them these tests fail, they do not skip.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from stormwatch.config import REPO_ROOT

PROM = REPO_ROOT / "deploy" / "prometheus"
AM = REPO_ROOT / "deploy" / "alertmanager"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: apt-get install prometheus prometheus-alertmanager (./dev.sh install)"
    return path


def run(*args: str, cwd=REPO_ROOT) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_promtool_checks_the_config_and_rules() -> None:
    out = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=PROM)
    assert "14 rules found" in out


def test_promtool_rule_unit_tests_pass() -> None:
    out = run(tool("promtool"), "test", "rules", "tests/stormwatch_test.yml", cwd=PROM)
    assert "SUCCESS" in out


def test_amtool_checks_the_alertmanager_config() -> None:
    out = run(tool("amtool"), "check-config", "alertmanager.yml", cwd=AM)
    assert "3 inhibit rules" in out and "SUCCESS" in out


@pytest.mark.parametrize(("labels", "receivers"), [
    ("alertname=StormwatchCrisis severity=critical brand=American channel=all",
     "oncall-pagerduty,airlines-slack,social-slack,crisis-webhook"),
    ("alertname=StormwatchCrisis severity=warning brand=Acme channel=twitter", "social-slack,crisis-webhook"),
    ("alertname=StormwatchWorkerDown severity=critical team=platform", "platform-pagerduty,platform-webhook"),
    ("alertname=StormwatchDLQRateHigh severity=warning team=platform", "platform-webhook"),
])
def test_amtool_routes_by_severity_brand_and_team(labels: str, receivers: str) -> None:
    out = run(tool("amtool"), "config", "routes", "test", "--config.file=alertmanager.yml", *labels.split(),
              cwd=AM)
    assert out.splitlines()[0].strip() == receivers
