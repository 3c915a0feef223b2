"""Static checks of the Helm chart (charts/certmint) that need no helm binary and no cluster.

What helm and the API server make of the chart (lint, schema, rendering, install, RBAC
in action) is tested in tests/e2e/test_helm.py.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from certmint import cli

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "certmint"


def chart() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- copies that must stay identical to their source of truth -------------------------------


def test_chart_crds_are_identical_copies_of_crds():
    source = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    copies = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert source, "crds/*.yaml is empty"
    fix = "run: cp crds/*.yaml charts/certmint/crds/"
    assert copies.keys() == source.keys(), (
        f"charts/certmint/crds/ holds {sorted(copies)}, crds/ holds {sorted(source)}; {fix} "
        "(and remove the chart's copies of CRDs that crds/ no longer has)")
    differ = [name for name in source if copies[name] != source[name]]
    assert not differ, f"charts/certmint/crds/ differs from crds/ in {differ}: the chart ships stale CRDs; {fix}"


def test_chart_alert_rules_are_a_copy_of_the_canonical_rules():
    canonical = REPO / "docs" / "prometheus" / "alert-rules.yaml"
    copy = CHART / "files" / "alert-rules.yaml"
    assert copy.read_bytes() == canonical.read_bytes(), (
        "charts/certmint/files/alert-rules.yaml differs from docs/prometheus/alert-rules.yaml: "
        "run: cp docs/prometheus/alert-rules.yaml charts/certmint/files/alert-rules.yaml")
    groups = yaml.safe_load(copy.read_text())["groups"]
    assert groups and all(g["rules"] for g in groups)


# --- Chart.yaml and values.yaml ----------------------------------------------------------------


def test_chart_metadata():
    meta = chart()
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "certmint"
    assert meta["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", meta["version"]), "version must be SemVer"


def test_app_version_is_the_pyproject_version():
    assert chart()["appVersion"] == pyproject()["project"]["version"], (
        "charts/certmint/Chart.yaml appVersion must be pyproject.toml's version: the default image tag")


def test_values_schema_is_valid_json_and_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False  # typos in value names fail the install
    declared = set(schema["properties"])
    assert set(values()) <= declared, f"values not in the schema: {set(values()) - declared}"
    for name, prop in schema["properties"].items():
        if prop.get("type") == "object" and "properties" in prop and name in values():
            assert set(values()[name]) <= set(prop["properties"]), f"{name}: values not in the schema"


def test_default_values():
    v = values()
    assert v["replicaCount"] == 1
    assert v["namespaces"] == []  # all namespaces
    assert v["metrics"]["port"] == 9402
    assert v["logFormat"] in {"text", "json"}
    assert v["leaderElection"]["enabled"] is True
    assert v["image"]["tag"] == ""  # appVersion
    assert v["serviceMonitor"]["enabled"] is False and v["prometheusRule"]["enabled"] is False


def test_cli_defaults_match_the_chart_defaults():
    args = cli.parser().parse_args(["operator"])
    assert args.metrics_port == values()["metrics"]["port"]
    assert args.log_format == values()["logFormat"]
    assert args.log_level == values()["logLevel"]


# --- templates --------------------------------------------------------------------------------


def _operator_options() -> set[str]:
    sub = next(a for a in cli.parser()._actions if a.dest == "command")
    return {s for action in sub.choices["operator"]._actions for s in action.option_strings}


def test_every_flag_the_deployment_passes_exists_in_the_cli():
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    args = deployment.split("args:", 1)[1].split("env:", 1)[0]
    flags = set(re.findall(r"^\s*- (--[a-z-]+)", args, re.MULTILINE))
    assert {"--namespace", "--cluster-resource-namespace", "--metrics-port", "--log-level", "--log-format",
            "--leader-elect", "--leader-election-namespace", "--leader-election-id"} <= flags
    unknown = flags - _operator_options()
    assert not unknown, f"the chart passes flags `certmint operator` does not have: {sorted(unknown)}"


def test_rbac_has_no_wildcards_and_never_deletes():
    rbac = (CHART / "templates" / "rbac.yaml").read_text()
    rule_line = re.compile(r"\s*(-\s*)?(apiGroups|resources|verbs|resourceNames):")
    rules = [line for line in rbac.splitlines() if rule_line.match(line)]
    assert rules
    assert not [line for line in rules if "*" in line], "RBAC rules must not use wildcards"
    operator_rules = rbac.split("aggregateToDefaultRoles", 1)[0]  # the user-facing roles come after
    # the one delete: Bundle targets (ConfigMaps and Secrets), never anything else
    deletes = re.findall(r'resources: \[([^\]]*)\]\n\s*verbs: \[([^\]]*"delete"[^\]]*)\]', operator_rules)
    assert deletes == [('"configmaps", "secrets"', '"delete"')], deletes
    assert '"deletecollection"' not in operator_rules
    for forbidden in ('"pods"', '"clusterroles"', '"roles"', '"rolebindings"',
                      '"clusterrolebindings"', '"escalate"', '"bind"', '"impersonate"'):
        assert forbidden not in rbac, f"the operator needs no {forbidden}"
    # namespaces: read only (Bundles select them by label)
    assert re.findall(r'resources: \["namespaces"\]\n\s*verbs: \[([^\]]*)\]', rbac) == ['"get", "list", "watch"']


@pytest.mark.parametrize("template", sorted(p.name for p in (CHART / "templates").glob("*.yaml")))
def test_namespaced_objects_set_their_namespace(template):
    """`helm template | kubectl apply` must not put objects into kubectl's current namespace."""
    text = (CHART / "templates" / template).read_text()
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding"}
    for doc in re.split(r"^---$", text, flags=re.MULTILINE):
        kind = re.search(r"^kind: (\w+)", doc, re.MULTILINE)
        if kind and kind.group(1) not in cluster_scoped:
            assert re.search(r"^  namespace: ", doc, re.MULTILINE), \
                f"{template}: {kind.group(1)} without metadata.namespace"
