"""The deployment files: deploy/compose.yaml and the Kubernetes manifests in deploy/k8s.

compose: ``docker-compose config`` (Debian's ``docker-compose`` package, installed by
dev.sh; it checks the file against the Compose schema without a Docker daemon), plus
structural checks of what stormwatch needs. Kubernetes: every built-in resource is
validated against the Kubernetes 1.37 OpenAPI schemas (``kubernetes-validate``, strict);
the KEDA ScaledObject, whose schema that package does not carry, is checked field by
field against the Deployment and ConfigMap it must agree with.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stormwatch.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
SECRET_WORDS = ("TOKEN", "SALT", "SECRET", "PASSWORD")


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_config_passes_docker_compose():
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed (./dev.sh install adds the Debian package)")
    proc = subprocess.run([tool, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rendered = subprocess.run([tool, "-f", str(DEPLOY / "compose.yaml"), "config", "--services"],
                              capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert {"kafka", "worker", "ingest-webhook", "prometheus", "alertmanager", "grafana"} <= set(rendered)


def test_compose_runs_kafka_in_kraft_mode_and_keeps_secrets_in_files():
    c = compose()
    services = c["services"]
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller" and "KAFKA_ZOOKEEPER_CONNECT" not in kafka
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name, svc in services.items():
        env = svc.get("environment", {})
        for key, value in env.items():
            if any(w in key for w in SECRET_WORDS) and not key.startswith("KAFKA_"):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
    assert all("file" in s for s in c["secrets"].values())
    assert services["worker"]["command"][0] == "worker" and services["worker"]["stop_grace_period"] == "60s"
    assert services["worker"]["environment"]["STORMWATCH_KAFKA"] == "kafka:9092"
    assert "--host" in services["ingest-webhook"]["command"]
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "/etc/grafana/provisioning" in grafana_mounts
    # Ports are published on the loopback only: nothing is open to the network by default.
    for svc in services.values():
        assert all(str(p).startswith("127.0.0.1:") for p in svc.get("ports", []))


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def test_builtin_resources_validate_against_the_kubernetes_schemas():
    import kubernetes_validate

    checked = []
    for path, doc in manifests():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        kubernetes_validate.validate(doc, "1.37.0", strict=True)  # raises ValidationError with the path
        checked.append((path.name, doc["kind"]))
    kinds = {k for _, k in checked}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job"} <= kinds


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kust["resources"]) == files
    kubectl = shutil.which("kubectl")
    if kubectl:  # renders offline; a broken reference fails here
        out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "kind: ScaledObject" in out.stdout and "image: stormwatch:0.1.0" in out.stdout


def test_the_autoscaler_scales_the_worker_on_its_own_group_within_the_partition_count():
    config = by_kind("ConfigMap")["stormwatch-config"]["data"]
    worker = by_kind("Deployment")["stormwatch-worker"]
    scaled = by_kind("ScaledObject")["stormwatch-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= int(config["STORMWATCH_PARTITIONS"])
    (trigger,) = scaled["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka" and meta["consumerGroup"] == config["STORMWATCH_APP_ID"]
    assert meta["bootstrapServers"] == config["STORMWATCH_KAFKA"] and meta["topic"] == "posts.raw"
    assert int(meta["lagThreshold"]) > 0 and meta["allowIdleConsumers"] == "false"
    down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300  # each change is a rebalance: not too often


def test_secrets_reach_the_pods_as_files_only():
    secret = by_kind("Secret")["stormwatch-secrets"]
    assert all(v.startswith("REPLACE") or v == "" for v in secret["stringData"].values())  # a template
    for name, dep in by_kind("Deployment").items():
        spec = dep["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for e in c.get("env", []):
                if any(w in e["name"] for w in SECRET_WORDS):
                    assert e["name"].endswith("_FILE") and "valueFrom" not in e, (name, e)
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert "memory" in c["resources"]["limits"]
        mounted = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert mounted == {"stormwatch-secrets"}, name
    assert by_kind("Deployment")["stormwatch-worker"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"] >= 30


def _settings_read_by_the_code() -> set[str]:
    import re

    names: set[str] = set()
    for path in (REPO_ROOT / "stormwatch").rglob("*.py"):
        names.update(re.findall(r"STORMWATCH_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")))
    return names


def _env_names(node: Any) -> set[str]:
    """Every STORMWATCH_* variable a deployment file sets (mapping keys or `name:` values)."""
    out: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(k, str) and k.startswith("STORMWATCH_"):
                out.add(k)
            if k == "name" and isinstance(v, str) and v.startswith("STORMWATCH_"):
                out.add(v)
            out |= _env_names(v)
    elif isinstance(node, list):
        for v in node:
            out |= _env_names(v)
    return out


def test_every_setting_the_deployment_files_set_is_one_the_code_reads():
    known = _settings_read_by_the_code()
    manifests = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    docs = [compose(), *manifests]
    used = set().union(*(_env_names(d) for d in docs))
    assert len(used) >= 6
    unknown = {n for n in used if n not in known and not (n.endswith("_FILE") and n[:-5] in known)}
    assert unknown == set()


def test_the_configmaps_watch_config_is_valid():
    from stormwatch.watch import parse_watch

    cm = yaml.safe_load((K8S / "configmap.yaml").read_text())
    cfg = parse_watch(cm["data"]["watch.yaml"], "configmap.yaml:watch.yaml")
    assert list(cfg.brands) == ["Acme Bank"] and "mastodon" in cfg.channels
