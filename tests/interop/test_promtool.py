"""The alert rules and the Grafana dashboard, checked with the real promtool and the operator's own registry.

promtool comes from Debian's `prometheus` package (`make system-deps`). A missing
promtool fails these tests: nothing is skipped.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from certmint.metrics import CertificateSeries, Metrics
from prometheus_server import SEED_001_RULES

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "docs" / "prometheus"
RULES = RULES_DIR / "alert-rules.yaml"
RULE_TESTS = RULES_DIR / "alert-rules.test.yaml"
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"

# The expressions users already run against cert-manager (the seeds, and
# /work/shared/reference/cert-manager-compat.md). They must stay exactly as they are:
# a user's copy of these rules has to keep working against certmint.
SEED_EXPRESSIONS = {
    "CertificateExpiringSoon": "certmanager_certificate_expiration_timestamp_seconds - time() < 604800",
    "CertificateExpiringIn30Days": "(certmanager_certificate_expiration_timestamp_seconds - time()) / 86400 < 30",
    "CertificateExpired": "certmanager_certificate_expiration_timestamp_seconds < time()",
    "CertificateNotReady": 'certmanager_certificate_ready_status{condition="False"} == 1',
    "CertmintOperatorDown": 'absent(up{job="certmint"} == 1)',
}
ALERTS = {*SEED_EXPRESSIONS, "IssuerNotReady", "CRLNotRefreshed", "CRLExpired"}
# Recording rules: the name seed 001's rules use, from the name certmint (and cert-manager) export.
RECORDS = {"cert_manager_certificate_expiration_timestamp_seconds": "certmanager_certificate_expiration_timestamp_seconds"}
SEVERITIES = {"critical", "warning", "info"}
# Series Prometheus itself makes for every scrape target: allowed besides the operator's.
SCRAPE_SERIES = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring",
            "group_left", "group_right"}


def promtool(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found on PATH: run `make system-deps` (hack/install-system-deps.sh installs "
                    "Debian's prometheus package, which provides promtool)", pytrace=False)
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def load_rules() -> dict[str, dict]:
    """The alerting rules, by alert name."""
    rules = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                continue
            assert "alert" in rule, f"an alerting or recording rule: {rule}"
            assert rule["alert"] not in rules, f"alert {rule['alert']} is defined twice"
            rules[rule["alert"]] = rule
    return rules


def load_records() -> dict[str, str]:
    """The recording rules: recorded name -> expression."""
    return {rule["record"]: rule["expr"].strip() for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"] if "record" in rule}


def exported_series_names() -> set[str]:
    """The series names the operator's registry exposes, derived from each family's type."""
    names = set(CertificateSeries.NAMES)  # gauges written straight to the scrape, outside the registry
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        elif family.type == "summary":
            names.update(family.name + suffix for suffix in ("", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (enough of PromQL for our rules and panels)."""
    s = re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+", "x", expr)  # Grafana variables
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', s)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", s):
        word = match.group()
        if word.lower() in KEYWORDS or re.match(r"\s*\(", s[match.end():]):  # keyword, or function call
            continue
        names.add(word)
    return names


def grafana_to_promql(expr: str) -> str:
    """A panel query with Grafana's variables replaced by what Grafana sends, for promtool to parse."""
    expr = re.sub(r"\$__\w+|\$\{__\w+\}", "5m", expr)  # $__rate_interval, $__interval, $__range
    return re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+", ".*", expr)  # template variables, used in =~ matchers


# --- the alert rules ---------------------------------------------------------------------------


def test_promtool_check_rules_accepts_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}\n{result.stderr}"
    assert f"SUCCESS: {len(ALERTS) + len(RECORDS)} rules found" in result.stdout, result.stdout


def test_promtool_rule_unit_tests_pass():
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout, result.stdout


def test_the_rules_define_the_documented_alerts():
    assert set(load_rules()) == ALERTS
    assert load_records() == RECORDS


def test_the_users_expressions_are_kept_verbatim():
    rules = load_rules()
    for alert, expr in SEED_EXPRESSIONS.items():
        assert rules[alert]["expr"].strip() == expr, f"{alert}: the expression users run must not change"
    issuer = rules["IssuerNotReady"]["expr"]
    assert 'certmanager_issuer_ready_status{condition="False"} == 1' in issuer
    assert 'certmanager_clusterissuer_ready_status{condition="False"} == 1' in issuer


def test_every_rule_has_a_for_duration_a_severity_and_annotations():
    for alert, rule in load_rules().items():
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{alert}: `for` must be set explicitly"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{alert}: severity not in {SEVERITIES}"
        annotations = rule.get("annotations", {})
        assert {"summary", "description"} <= set(annotations), f"{alert}: needs summary and description"
        if alert != "CertmintOperatorDown":  # absent() has no labels to show
            assert "$labels.name" in annotations["summary"] or "$labels.issuer_name" in annotations["summary"], \
                f"{alert}: the summary should name the object"


def test_the_unit_tests_make_every_alert_fire_and_stay_silent():
    """Each alert: at least one case where it fires (with labels and annotations) and one where it does not."""
    rules = load_rules()
    document = yaml.safe_load(RULE_TESTS.read_text())
    assert document["rule_files"] == [RULES.name]
    fires, silent = set(), set()
    for group in document["tests"]:
        for case in group.get("alert_rule_test", []):
            name = case["alertname"]
            assert name in rules, f"test {group['name']!r} names an alert the rules do not define: {name}"
            expected = case.get("exp_alerts") or []
            if expected:
                fires.add(name)
                for alert in expected:
                    assert alert.get("exp_labels", {}).get("severity") == rules[name]["labels"]["severity"]
                    assert {"summary", "description"} <= set(alert.get("exp_annotations", {})), \
                        f"{name} at {case['eval_time']}: expect the annotations too"
            else:
                silent.add(name)
    assert set(rules) - fires == set(), "alerts never shown firing"
    assert set(rules) - silent == set(), "alerts never shown silent"


def test_the_rules_use_only_metrics_the_operator_exports():
    exported = exported_series_names() | SCRAPE_SERIES
    for alert, expr in [*((a, r["expr"]) for a, r in load_rules().items()), *load_records().items()]:
        used = metric_names(expr)
        assert used, f"{alert}: no metric found in {expr!r}"
        assert used <= exported, f"{alert} uses metrics certmint does not export: {sorted(used - exported)}"


SEED_001_TESTS = """\
rule_files: [recording.yaml, seed.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'certmanager_certificate_expiration_timestamp_seconds{job="certmint",name="agent-01",namespace="netstress",issuer_name="agents-ca",issuer_kind="Issuer",issuer_group="certmint.io"}'
        values: '864000x120'
      - series: 'certmanager_certificate_expiration_timestamp_seconds{job="certmint",name="legacy",namespace="netstress",issuer_name="agents-ca",issuer_kind="Issuer",issuer_group="certmint.io"}'
        values: '1800x120'
    alert_rule_test:
      - eval_time: 59m
        alertname: CertificateExpiringSoon
        exp_alerts: []
      - eval_time: 61m
        alertname: CertificateExpiringSoon
        exp_alerts:
          - exp_labels: {severity: warning, job: certmint, name: agent-01, namespace: netstress,
                         issuer_name: agents-ca, issuer_kind: Issuer, issuer_group: certmint.io}
            exp_annotations: {summary: Certificate expiring soon,
                              description: Certificate agent-01 expires in less than 30 days}
          - exp_labels: {severity: warning, job: certmint, name: legacy, namespace: netstress,
                         issuer_name: agents-ca, issuer_kind: Issuer, issuer_group: certmint.io}
            exp_annotations: {summary: Certificate expiring soon,
                              description: Certificate legacy expires in less than 30 days}
      - eval_time: 20m
        alertname: CertificateExpired
        exp_alerts: []
      - eval_time: 40m
        alertname: CertificateExpired
        exp_alerts:
          - exp_labels: {severity: critical, job: certmint, name: legacy, namespace: netstress,
                         issuer_name: agents-ca, issuer_kind: Issuer, issuer_group: certmint.io}
            exp_annotations: {summary: Certificate expired, description: Certificate legacy has expired}
"""


def test_seed_rules_spelled_cert_manager_work_with_the_recording_rule(tmp_path):
    """Seed 001's rules, as written, fire on certmint's series through the recording rule, and
    without it they see nothing (the test can fail)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recording = [g for g in groups if any("record" in r for r in g["rules"])]
    (tmp_path / "recording.yaml").write_text(yaml.safe_dump({"groups": recording}))
    (tmp_path / "seed.yaml").write_text(SEED_001_RULES)
    (tmp_path / "seed.test.yaml").write_text(SEED_001_TESTS)
    result = promtool("test", "rules", "seed.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    (tmp_path / "recording.yaml").write_text(yaml.safe_dump({"groups": []}))
    without = promtool("test", "rules", "seed.test.yaml", cwd=tmp_path)
    assert without.returncode != 0, "the seed's rules fired without the recording rule"


# --- the Grafana dashboard -----------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for every query, rows' nested panels included."""
    out = []
    for panel in board["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                out.append((inner["title"], target["expr"]))
    return out


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_variable():
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel.get("targets", []):
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_has_the_panels_operators_need():
    board = dashboard()
    titles = {p["title"]: p for p in board["panels"]}
    queries = "\n".join(expr for _, expr in panel_queries(board))
    assert titles["Time to expiry per certificate"]["type"] == "table"
    sort = [t for t in titles["Time to expiry per certificate"].get("transformations", []) if t["id"] == "sortBy"]
    assert sort and sort[0]["options"]["sort"][0] == {"field": "Expires in", "desc": False}
    for needed in ("certmanager_certificate_ready_status", "certmanager_certificate_expiration_timestamp_seconds",
                   "7 * 86400", "30 * 86400", "certmanager_issuer_ready_status",
                   "certmanager_clusterissuer_ready_status", "certmint_issuances_total",
                   "certmint_issuance_failures_total", "certmint_issuance_duration_seconds_bucket",
                   "histogram_quantile(0.5,", "histogram_quantile(0.99,", "certmint_api_requests_total",
                   "by (verb)", "by (reason)"):
        assert needed in queries, f"no panel query contains {needed!r}"


def test_dashboard_queries_use_only_metrics_the_operator_exports():
    exported = exported_series_names() | SCRAPE_SERIES
    board = dashboard()
    queries = panel_queries(board)
    queries += [(f"variable {v['name']}", v["definition"]) for v in board["templating"]["list"]
                if v["type"] == "query"]
    for title, expr in queries:
        expr = re.sub(r"^label_values\((\w+),\s*\w+\)$", r"\1", expr)  # Grafana's variable query
        used = metric_names(expr)
        assert used, f"{title}: no metric found in {expr!r}"
        assert used <= exported, f"{title}: {sorted(used - exported)} are not exported by certmint"


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses each query, as a recording rule, with Grafana's variables filled in."""
    rules = [{"record": f"dashboard:panel_{i}", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(panel_queries(dashboard()))]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, f"a dashboard query is not valid PromQL:\n{result.stdout}\n{result.stderr}"


def test_metric_name_extraction():
    """The helper the two checks above rely on."""
    assert metric_names('sum by (le) (rate(a_bucket{x="y(z)"}[$__rate_interval])) * 60') == {"a_bucket"}
    assert metric_names("absent(up{job=\"certmint\"} == 1)") == {"up"}
    assert metric_names('label_replace(b{c="False"} == 1, "kind", "Issuer", "", "") or d') == {"b", "d"}
    assert metric_names("count(e - time() < 7 * 86400) or vector(0)") == {"e"}
    assert metric_names("f offset 5m and on (g) h") == {"f", "h"}


def test_exposition_passes_promtool_and_keeps_cert_managers_exact_names(tmp_path):
    """What a scrape of the operator returns, with every family populated, is valid for Prometheus,
    and the controller counters carry cert-manager's names without a _total suffix."""
    import datetime as dt

    m = Metrics()
    now = dt.datetime.now(dt.timezone.utc)
    m.set_certificate("ns", "web", ("ca", "Issuer", "certmint.io"), "True", now, now + dt.timedelta(days=90),
                      now + dt.timedelta(days=60))
    m.set_issuer("Issuer", "ns", "ca", "True", now + dt.timedelta(days=365))
    m.set_issuer("ClusterIssuer", "", "root", "False", None)
    m.sync_calls.labels("Certificate").inc()
    m.sync_errors.labels("Certificate").inc()
    m.issuance_seconds.labels("ECDSA").observe(0.01)
    m.issuances.labels("DoesNotExist").inc()
    m.issuance_failures.labels("SigningFailed").inc()
    m.api_requests.labels("patch").inc()
    text = m.text()
    path = tmp_path / "metrics.txt"
    path.write_text(text)
    result = subprocess.run(f"{shutil.which('promtool') or 'promtool'} check metrics < {path}", shell=True,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'certmanager_controller_sync_call_count{controller="Certificate"} 1.0' in text
    assert 'certmanager_controller_sync_error_count{controller="Certificate"} 1.0' in text

    # a certificate whose Secret lost its certificate keeps no stale dates
    m.set_certificate("ns", "web", ("ca", "Issuer", "certmint.io"), "False")
    text = m.text()
    assert "certmanager_certificate_expiration_timestamp_seconds{" not in text
    assert 'certmanager_certificate_ready_status{name="web",namespace="ns",issuer_name="ca",issuer_kind="Issuer",' \
        'issuer_group="certmint.io",condition="False"} 1.0' in text
