"""The Helm chart (charts/certmint) with the real helm binary against a real API server:
lint, values schema, rendering, a server-side dry run, install, upgrade and uninstall, and
least privilege proven by running the operator with nothing but the chart's ServiceAccount
token and issuing certificates with it.

The module starts its own control plane, without certmint's CRDs (so helm installs them,
and we can see that uninstall keeps them), and without the session operator: that one
runs as cluster admin over all namespaces and would issue these certificates itself,
which would prove nothing about the chart's RBAC. No pod ever runs here (no kubelet): the
Deployment is checked as an object, and the operator runs as a local process under the
ServiceAccount's identity instead.

The tests share one release and run in file order: install, upgrade to watched
namespaces, permissions, issuance under the ServiceAccount, uninstall last.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import localcluster
from conftest import apply, get_json, openssl, run_kubectl, secret_data, start_operator, wait_for_events, wait_ready

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "certmint"
RELEASE, RELEASE_NS = "certmint", "certmint"
WATCHED = ("apps-a", "apps-b")
UNWATCHED = "other"
SA = f"system:serviceaccount:{RELEASE_NS}:certmint"
IDENTITY = "certmint-helm-e2e"  # POD_NAME of the operator under test: its events carry it
CRD_NAMES = ("certificates.certmint.io", "issuers.certmint.io", "clusterissuers.certmint.io")


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class Helm:
    cluster: localcluster.Cluster
    home: Path

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**self.cluster.env(), "HELM_CACHE_HOME": str(self.home / "cache"),
               "HELM_CONFIG_HOME": str(self.home / "config"), "HELM_DATA_HOME": str(self.home / "data")}
        result = subprocess.run([localcluster.binary("helm"), *args, "--kubeconfig", str(self.cluster.kubeconfig)],
                                capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def template(self, *args: str, namespace: str = RELEASE_NS) -> list[dict]:
        out = self("template", RELEASE, str(CHART), "-n", namespace, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d]


@dataclass
class AsServiceAccount:
    """What start_operator needs of a cluster, with the ServiceAccount's kubeconfig only:
    the operator process has no other credentials, not even in its environment."""
    kubeconfig: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.extra_env}


def find(docs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
             and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, found {len(found)}"
    return found[0]


def container(docs: list[dict]) -> dict:
    return find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def grants(docs: list[dict]) -> set[tuple[str, str, str, str]]:
    """Every (scope, resource, verb, resourceName) the chart grants its ServiceAccount;
    scope is "cluster" or the namespace of the binding."""
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    out = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert [s["name"] for s in binding["subjects"]] == ["certmint"]
        ref = binding["roleRef"]
        role_namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], ref["name"], role_namespace)]
        scope = binding["metadata"].get("namespace") or "cluster"
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or ["*any*"]:
                            out.add((scope, f"{group}/{resource}".lstrip("/"), verb, name))
    return out


ALL = "all namespaces"


def can_i(kubectl, verb: str, resource: str, namespace: str | None = None, subresource: str | None = None) -> bool:
    """kubectl auth can-i as the chart's ServiceAccount; namespace None for cluster-scoped resources."""
    args = ["auth", "can-i", verb, resource, f"--as={SA}"]
    args += ["--all-namespaces"] if namespace == ALL else ["-n", namespace] if namespace else []
    args += [f"--subresource={subresource}"] if subresource else []
    answer = kubectl(*args, check=False)
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


@contextlib.contextmanager
def operator_log_on_failure(op):
    """The operator under test is ours, not the session's: attach its log tail to a failure."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- operator log (tail) ---\n{op.log_text()[-6000:]}") from None


def deployment_args(kubectl) -> list[str]:
    deployment = get_json(kubectl, "deployment", "-n", RELEASE_NS, "certmint")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory):
    """A control plane of our own, with no CRDs: the chart installs them."""
    c = localcluster.start(tmp_path_factory.mktemp("helm-cluster"), tie_to_parent=True)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def kubectl(bare_cluster):
    def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120):
        return run_kubectl(bare_cluster, *args, input=input, check=check, timeout=timeout)
    return kubectl


@pytest.fixture(scope="module")
def helm(bare_cluster, tmp_path_factory):
    return Helm(bare_cluster, tmp_path_factory.mktemp("helm-home"))


def ensure_namespaces(kubectl, *names: str) -> None:
    for name in names:
        manifest = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        kubectl("apply", "-f", "-", input=manifest)


@pytest.fixture(scope="module")
def release(helm, kubectl):
    """`helm install` with the default values: all namespaces, cluster-wide RBAC."""
    result = helm("install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace")
    assert "STATUS: deployed" in result.stdout
    return result


@pytest.fixture(scope="module")
def namespaced(release, helm, kubectl):
    """The release upgraded to watch WATCHED only, at log level DEBUG."""
    ensure_namespaces(kubectl, *WATCHED, UNWATCHED)
    before = get_json(kubectl, "deployment", "-n", RELEASE_NS, "certmint")
    helm("upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--reuse-values", "--set", "logLevel=DEBUG",
         "--set", f"namespaces={{{','.join(WATCHED)}}}")
    return before


@pytest.fixture(scope="module")
def sa_kubeconfig(namespaced, kubectl, tmp_path_factory) -> Path:
    """A kubeconfig holding only a TokenRequest token of the chart's ServiceAccount."""
    token = kubectl("create", "token", "certmint", "-n", RELEASE_NS, "--duration", "1h").stdout.strip()
    admin = yaml.safe_load(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server["server"], "certificate-authority-data": server["certificate-authority-data"]}}],
        "users": [{"name": "certmint", "user": {"token": token}}],
        "contexts": [{"name": "certmint", "context": {"cluster": "local", "user": "certmint"}}],
        "current-context": "certmint",
    }
    path = tmp_path_factory.mktemp("sa") / "kubeconfig"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def sa_operator(sa_kubeconfig, kubectl, tmp_path_factory):
    """The operator as a process, with the installed Deployment's arguments and environment,
    and the ServiceAccount's token as its only credential.

    Only the metrics port differs (start_operator picks a free one on 127.0.0.1)."""
    args = deployment_args(kubectl)
    assert args[0] == "operator" and f"--namespace={WATCHED[0]}" in args and "--leader-elect" in args
    flags = [a for a in args[1:] if not a.startswith("--metrics-port")]
    log = tmp_path_factory.mktemp("sa-operator") / "operator.log"
    env = {"POD_NAME": IDENTITY, "POD_NAMESPACE": RELEASE_NS}  # the downward API's, in a pod
    op = start_operator(AsServiceAccount(sa_kubeconfig, env), log, *flags)
    yield op
    op.stop()


# --- the chart as files: lint, schema, rendering ---------------------------------------------


def test_lint_is_clean(helm):
    for values in ([], ["--set", "namespaces={a,b}", "--set", "serviceMonitor.enabled=true",
                        "--set", "prometheusRule.enabled=true", "--set", "replicaCount=3"]):
        result = helm("lint", "--strict", str(CHART), *values)
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("values, message", [
    (["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"),
    (["--set", "logFormat=xml"], "at '/logFormat': value must be one of 'text', 'json'"),
    (["--set", "logLevel=verbose"], "at '/logLevel'"),
    (["--set", "metrics.port=-1"], "at '/metrics/port': minimum: got -1, want 1"),
    (["--set", "metrics.port=70000"], "at '/metrics/port': maximum"),
    (["--set", "namespaces={Not_A_Namespace}"], "at '/namespaces/0': 'Not_A_Namespace' does not match pattern"),
    (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
    (["--set", "logLevl=DEBUG"], "additional properties 'logLevl' not allowed"),
    (["--set", "extraArgs={workers=4}"], "at '/extraArgs/0': 'workers=4' does not match pattern '^--'"),
    (["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
     "replicaCount is 2 but leaderElection.enabled is false"),
])
def test_wrong_values_fail_with_a_clear_message(helm, values, message):
    result = helm("template", RELEASE, str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_default_rendering(helm):
    docs = helm.template()
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deployment = find(docs, "Deployment", "certmint", RELEASE_NS)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "certmint" and labels["app.kubernetes.io/instance"] == RELEASE
    assert labels["app.kubernetes.io/version"] == meta["appVersion"]
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "certmint"
    c = container(docs)
    assert c["image"] == f"ghcr.io/certmint/certmint:{meta['appVersion']}"
    assert "command" not in c  # the image's ENTRYPOINT, certmint
    assert c["args"] == ["operator", f"--cluster-resource-namespace={RELEASE_NS}", "--metrics-port=9402",
                         "--log-level=INFO", "--log-format=text", "--leader-elect",
                         f"--leader-election-namespace={RELEASE_NS}", f"--leader-election-id={RELEASE}"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"] if "valueFrom" in e}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert c["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["ports"] == [{"name": "metrics", "containerPort": 9402, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    service = find(docs, "Service", "certmint", RELEASE_NS)
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9402, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert not [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]


def test_rendering_with_options(helm):
    docs = helm.template(
        "--set", "replicaCount=3", "--set", "namespaces={team-a,team-b}", "--set", "clusterResourceNamespace=pki",
        "--set", "metrics.port=9500", "--set", "logFormat=json", "--set", "logLevel=DEBUG",
        "--set", "leaderElection.id=my-lease", "--set", "image.tag=dev", "--set", "extraArgs={--workers=16}",
        "--set", "podAnnotations.a=b", "--set", "nodeSelector.disk=ssd", "--set", "imagePullSecrets[0].name=reg",
        "--set", "tolerations[0].operator=Exists", "--set", "affinity.nodeAffinity.x=y")
    deployment = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    c = container(docs)
    assert c["args"] == ["operator", "--namespace=team-a", "--namespace=team-b", "--cluster-resource-namespace=pki",
                         "--metrics-port=9500", "--log-level=DEBUG", "--log-format=json", "--leader-elect",
                         f"--leader-election-namespace={RELEASE_NS}", "--leader-election-id=my-lease",
                         "--workers=16"]
    assert c["image"].endswith(":dev") and c["ports"][0]["containerPort"] == 9500
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"a": "b"}
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd"} and pod["spec"]["imagePullSecrets"] == [{"name": "reg"}]
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}] and pod["spec"]["affinity"]
    # the Service keeps its well-known port; it targets the container's port by name
    assert find(docs, "Service")["spec"]["ports"][0]["port"] == 9402
    lease_role = find(docs, "Role", "certmint-leader-election", RELEASE_NS)
    assert {"resourceNames": ["my-lease"], "verbs": ["get", "update"]}.items() <= lease_role["rules"][1].items()
    # replicas 1 with leader election off is fine (Recreate: never two at once)
    docs = helm.template("--set", "leaderElection.enabled=false")
    assert not [a for a in container(docs)["args"] if a.startswith("--leader")]
    assert not [d for d in docs if d["kind"] == "Role"]
    assert find(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    # an explicit strategy wins
    docs = helm.template("--set", "strategy.type=RollingUpdate", "--set", "strategy.rollingUpdate.maxSurge=0")
    assert find(docs, "Deployment")["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}


VERBS_READ = {"get", "list", "watch"}
STATUS_WRITE = {"get", "patch", "update"}
SECRET_VERBS = {"get", "list", "watch", "create", "patch", "delete"}  # delete: Bundle targets only
CONFIGMAP_VERBS = {"get", "list", "watch", "create", "patch", "update"}  # the CRLs, and Bundle targets
CRNS_CONFIGMAP_VERBS = CONFIGMAP_VERBS  # the ClusterIssuers' CRLs; never deleted


def expected_namespaced(scope: str) -> set[tuple[str, str, str, str]]:
    out = set()
    for resource in ("certmint.io/certificates", "certmint.io/issuers", "certmint.io/certificaterevocations"):
        out |= {(scope, resource, v, "*any*") for v in VERBS_READ}
        out |= {(scope, resource + "/status", v, "*any*") for v in STATUS_WRITE}
    out |= {(scope, "secrets", v, "*any*") for v in SECRET_VERBS}
    out |= {(scope, "configmaps", v, "*any*") for v in CONFIGMAP_VERBS | {"delete"}}
    out |= {(scope, "events", v, "*any*") for v in ("create", "patch")}
    return out


CLUSTER_ISSUERS = ({("cluster", "certmint.io/clusterissuers", v, "*any*") for v in VERBS_READ}
                   | {("cluster", "certmint.io/clusterissuers/status", v, "*any*") for v in STATUS_WRITE}
                   # Bundles are cluster-scoped too, and select namespaces by label
                   | {("cluster", "certmint.io/bundles", v, "*any*") for v in VERBS_READ}
                   | {("cluster", "certmint.io/bundles/status", v, "*any*") for v in STATUS_WRITE}
                   | {("cluster", "namespaces", v, "*any*") for v in VERBS_READ})
LEASES = {(RELEASE_NS, "coordination.k8s.io/leases", "create", "*any*"),
          (RELEASE_NS, "coordination.k8s.io/leases", "get", RELEASE),
          (RELEASE_NS, "coordination.k8s.io/leases", "update", RELEASE)}


def test_rbac_is_exactly_what_the_operator_needs(helm):
    """The complete list of what the chart grants its ServiceAccount, in both modes."""
    everywhere = helm.template()
    assert grants(everywhere) == expected_namespaced("cluster") | CLUSTER_ISSUERS | LEASES
    watched = helm.template("--set", "namespaces={team-a,team-b}")
    assert grants(watched) == (expected_namespaced("team-a") | expected_namespaced("team-b") | CLUSTER_ISSUERS
                               | LEASES | {(RELEASE_NS, "secrets", "get", "*any*"),
                                           *{(RELEASE_NS, "configmaps", v, "*any*") for v in CRNS_CONFIGMAP_VERBS},
                                           ("default", "events", "create", "*any*"),
                                           ("default", "events", "patch", "*any*")})
    # a watched cluster resource namespace (or "default") needs no extra Role
    both = helm.template("--set", f"namespaces={{team-a,{RELEASE_NS},default}}")
    assert grants(both) == (expected_namespaced("team-a") | expected_namespaced(RELEASE_NS)
                            | expected_namespaced("default") | CLUSTER_ISSUERS | LEASES)
    for docs in (everywhere, watched):
        for role in (d for d in docs if d["kind"] in ("Role", "ClusterRole")):
            for rule in role["rules"]:
                assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], role["metadata"]["name"]


def test_monitoring_objects(helm):
    docs = helm.template("--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prom",
                         "--set", "prometheusRule.enabled=true")
    monitor = find(docs, "ServiceMonitor", "certmint", RELEASE_NS)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"] == find(docs, "Service")["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # the alert rules' job="certmint": the job label comes from the Service's app.kubernetes.io/name
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert find(docs, "Service")["metadata"]["labels"]["app.kubernetes.io/name"] == "certmint"
    rule = find(docs, "PrometheusRule", "certmint", RELEASE_NS)
    canonical = yaml.safe_load((CHART / "files" / "alert-rules.yaml").read_text())["groups"]
    assert rule["spec"]["groups"] == canonical  # verbatim: {{ $labels.name }} is Prometheus's, not Helm's
    exprs = {r.get("alert"): r["expr"] for g in canonical for r in g["rules"]}
    assert "certmanager_certificate_expiration_timestamp_seconds < time()" in exprs.values()


# --- against the API server --------------------------------------------------------------------

MONITORING_STUB_CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, plural: servicemonitors, listKind: ServiceMonitorList, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, plural: prometheusrules, listKind: PrometheusRuleList, singular: prometheusrule}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def test_server_side_dry_run(helm, kubectl):
    """Everything the chart renders, CRDs included, is accepted by the API server as is.

    Runs before the install: the CRDs are not in the cluster yet (--include-crds)."""
    assert "certmint.io" not in kubectl("get", "crd", "-o", "name").stdout, "run before the install"
    ensure_namespaces(kubectl, RELEASE_NS, "team-a")
    for values in ([], ["--set", "namespaces={team-a}", "--set", "replicaCount=2"]):
        manifest = helm("template", RELEASE, str(CHART), "-n", RELEASE_NS, "--include-crds", *values).stdout
        result = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
        assert "customresourcedefinition.apiextensions.k8s.io/certificates.certmint.io created (server dry run)" \
            in result.stdout
        assert "deployment.apps/certmint created (server dry run)" in result.stdout
    # the prometheus-operator objects, against stand-ins for its CRDs (kinds and versions only)
    kubectl("apply", "-f", "-", input=MONITORING_STUB_CRDS)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com")
    manifest = helm("template", RELEASE, str(CHART), "-n", RELEASE_NS, "--set", "serviceMonitor.enabled=true",
                    "--set", "prometheusRule.enabled=true").stdout
    result = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    assert "servicemonitor.monitoring.coreos.com/certmint created (server dry run)" in result.stdout
    assert "prometheusrule.monitoring.coreos.com/certmint created (server dry run)" in result.stdout


def test_install(release, helm, kubectl):
    # helm installed the CRDs from crds/, and they are served
    for crd in CRD_NAMES:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")
    assert get_json(kubectl, "crd", "certificates.certmint.io")["metadata"].get("labels", {}).get(
        "app.kubernetes.io/managed-by") != "Helm"  # not release objects: helm never upgrades or deletes them
    notes = release.stdout.split("NOTES:", 1)[1]
    assert "kubectl apply -f examples/selfsigned.yaml" in notes
    assert "kubectl wait --for=condition=Ready certificate/web" in notes
    assert "Service certmint.certmint.svc, port 9402 (`metrics`), path /metrics" in notes
    status = json.loads(helm("status", RELEASE, "-n", RELEASE_NS, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    for kind in ("deployment", "serviceaccount", "service"):
        kubectl("get", kind, "certmint", "-n", RELEASE_NS)
    assert deployment_args(kubectl)[:1] == ["operator"]
    kubectl("get", "clusterrolebinding", "certmint-controller", "certmint-clusterissuers")
    # all namespaces: the ServiceAccount may write Secrets anywhere (and delete Bundle targets), never namespaces
    assert can_i(kubectl, "create", "secrets", "some-namespace")
    assert can_i(kubectl, "list", "secrets", ALL) and not can_i(kubectl, "delete", "namespaces", None)
    # a wrong value is refused before anything is created
    bad = helm("install", "bad", str(CHART), "-n", RELEASE_NS, "--set", "logFormat=xml", check=False)
    assert bad.returncode != 0 and "at '/logFormat'" in bad.stderr
    assert "bad" not in helm("list", "-n", RELEASE_NS, "-q").stdout.split()


def test_upgrade_changes_the_deployment(namespaced, helm, kubectl):
    before = namespaced
    after = get_json(kubectl, "deployment", "-n", RELEASE_NS, "certmint")
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    old_args = before["spec"]["template"]["spec"]["containers"][0]["args"]
    new_args = after["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=INFO" in old_args and "--log-level=DEBUG" in new_args
    assert [a for a in new_args if a.startswith("--namespace=")] == [f"--namespace={ns}" for ns in WATCHED]
    assert json.loads(helm("status", RELEASE, "-n", RELEASE_NS, "-o", "json").stdout)["version"] == 2
    # cluster-wide Secret access is gone with the ClusterRoleBinding; a RoleBinding per watched namespace replaces it
    gone = kubectl("get", "clusterrolebinding", "certmint-controller", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    for ns in WATCHED:
        kubectl("get", "rolebinding", "certmint-controller", "-n", ns)


def test_service_account_permissions(namespaced, kubectl):
    a, b = WATCHED
    cannot = [
        ("delete", "namespaces", None, None), ("get", "pods", a, None), ("list", "pods", a, None),
        ("create", "pods", a, None), ("create", "pods", RELEASE_NS, None), ("list", "pods", ALL, None),
        ("create", "clusterroles", None, None), ("escalate", "clusterroles", None, None),
        ("bind", "clusterroles", None, None), ("create", "rolebindings", a, None),
        ("create", "rolebindings", RELEASE_NS, None), ("create", "clusterrolebindings", None, None),
        ("delete", "secrets", RELEASE_NS, None), ("update", "secrets", a, None), ("delete", "secrets", UNWATCHED, None),
        ("list", "secrets", ALL, None), ("get", "secrets", UNWATCHED, None), ("list", "secrets", UNWATCHED, None),
        ("create", "secrets", UNWATCHED, None), ("create", "secrets", RELEASE_NS, None),
        ("list", "secrets", RELEASE_NS, None), ("create", "events", UNWATCHED, None),
        ("list", "certificates.certmint.io", UNWATCHED, None), ("update", "certificates.certmint.io", a, None),
        ("patch", "certificates.certmint.io", a, None), ("delete", "certificates.certmint.io", a, None),
        ("create", "issuers.certmint.io", a, None), ("delete", "clusterissuers.certmint.io", None, None),
        ("delete", "leases.coordination.k8s.io", RELEASE_NS, None),
        ("get", "leases.coordination.k8s.io/someone-else", RELEASE_NS, None),
        ("create", "leases.coordination.k8s.io", a, None), ("delete", "customresourcedefinitions", None, None),
        ("create", "serviceaccounts/token", RELEASE_NS, None), ("impersonate", "users", None, None),
        ("delete", "configmaps", UNWATCHED, None), ("delete", "configmaps", RELEASE_NS, None),
        ("create", "namespaces", None, None), ("patch", "namespaces", None, None),
        ("create", "bundles.certmint.io", None, None), ("patch", "bundles.certmint.io", None, None),
        ("list", "configmaps", UNWATCHED, None), ("create", "certificaterevocations.certmint.io", a, None),
        ("delete", "certificaterevocations.certmint.io", a, None),
    ]
    can = [
        ("create", "secrets", a, None), ("patch", "secrets", b, None), ("watch", "secrets", b, None),
        ("get", "secrets", RELEASE_NS, None),
        ("patch", "certificates.certmint.io", a, "status"), ("update", "issuers.certmint.io", b, "status"),
        ("list", "certificates.certmint.io", a, None), ("watch", "issuers.certmint.io", b, None),
        ("list", "clusterissuers.certmint.io", None, None), ("patch", "clusterissuers.certmint.io", None, "status"),
        ("create", "events", a, None), ("patch", "events", b, None), ("create", "events", "default", None),
        ("create", "leases.coordination.k8s.io", RELEASE_NS, None),
        ("update", f"leases.coordination.k8s.io/{RELEASE}", RELEASE_NS, None),
        ("patch", "configmaps", a, None), ("watch", "configmaps", b, None), ("create", "configmaps", RELEASE_NS, None),
        ("watch", "certificaterevocations.certmint.io", a, None),
        ("delete", "configmaps", a, None), ("delete", "secrets", b, None),  # Bundle targets
        ("watch", "namespaces", None, None), ("watch", "bundles.certmint.io", None, None),
        ("patch", "bundles.certmint.io", None, "status"),
        ("patch", "certificaterevocations.certmint.io", b, "status"),
    ]
    wrong = [f"can {v} {r} in {ns or 'the cluster'}" for v, r, ns, sub in cannot if can_i(kubectl, v, r, ns, sub)]
    wrong += [f"cannot {v} {r}{'/' + sub if sub else ''} in {ns or 'the cluster'}"
              for v, r, ns, sub in can if not can_i(kubectl, v, r, ns, sub)]
    assert not wrong, f"{SA}: " + "; ".join(wrong)


ISSUANCE = """
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: web}
spec:
  secretName: web-tls
  commonName: web.example.com
  dnsNames: [web.example.com]
  duration: 24h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned}
"""

CA_CHAIN = """
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: root-ca}
spec:
  isCA: true
  commonName: helm e2e root
  secretName: root-ca-tls
  duration: 48h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: selfsigned}
---
apiVersion: certmint.io/v1
kind: Issuer
metadata: {name: root-ca}
spec: {ca: {secretName: root-ca-tls}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: api}
spec:
  secretName: api-tls
  dnsNames: [api.apps-b.svc]
  duration: 24h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: root-ca}
"""

CLUSTER_ISSUED = """
apiVersion: certmint.io/v1
kind: ClusterIssuer
metadata: {name: helm-e2e-ca}
spec: {ca: {secretName: cluster-ca}}
---
apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: from-cluster-issuer}
spec:
  secretName: from-cluster-issuer-tls
  dnsNames: [db.apps-a.svc]
  duration: 24h
  privateKey: {algorithm: ECDSA, size: 256}
  issuerRef: {name: helm-e2e-ca, kind: ClusterIssuer}
"""


def verify_chain(kubectl, namespace: str, secret: str, tmp_path: Path) -> None:
    data = secret_data(kubectl, namespace, secret)
    (tmp_path / "ca.crt").write_bytes(data["ca.crt"])
    (tmp_path / "tls.crt").write_bytes(data["tls.crt"])
    openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt"))


def test_operator_works_with_only_the_chart_rbac(sa_operator, sa_kubeconfig, kubectl, tmp_path):
    with operator_log_on_failure(sa_operator):
        issue_everything_as_the_service_account(sa_operator, sa_kubeconfig, kubectl, tmp_path)


def issue_everything_as_the_service_account(sa_operator, sa_kubeconfig, kubectl, tmp_path):
    a, b = WATCHED
    # the kubeconfig is the ServiceAccount, nothing more
    whoami = run_kubectl(AsServiceAccount(sa_kubeconfig), "auth", "whoami", "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == SA
    # leader election on the Lease the chart's Role allows
    lease = get_json(kubectl, "lease", "-n", RELEASE_NS, RELEASE)
    assert lease["spec"]["holderIdentity"].startswith(IDENTITY)

    # a self-signed certificate
    apply(kubectl, a, ISSUANCE)
    wait_ready(kubectl, a, "certificate/web")
    secret = get_json(kubectl, "secret", "-n", a, "web-tls")
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) >= {"tls.crt", "tls.key", "ca.crt"}
    subject = openssl("x509", "-noout", "-subject", input=secret_data(kubectl, a, "web-tls")["tls.crt"]).stdout
    assert b"web.example.com" in subject

    # a CA chain: self-signed root, CA issuer, leaf
    apply(kubectl, b, CA_CHAIN)
    wait_ready(kubectl, b, "certificate/root-ca")
    wait_ready(kubectl, b, "issuer/root-ca")
    wait_ready(kubectl, b, "certificate/api")
    verify_chain(kubectl, b, "api-tls", tmp_path)

    # a ClusterIssuer whose CA Secret sits in the (unwatched) cluster resource namespace
    root = secret_data(kubectl, b, "root-ca-tls")
    ca_secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                 "metadata": {"name": "cluster-ca", "namespace": RELEASE_NS},
                 "stringData": {"tls.crt": root["tls.crt"].decode(), "tls.key": root["tls.key"].decode()}}
    kubectl("apply", "-f", "-", input=json.dumps(ca_secret))
    apply(kubectl, a, CLUSTER_ISSUED)
    kubectl("wait", "--for=condition=Ready", "--timeout=60s", "clusterissuer/helm-e2e-ca", timeout=90)
    wait_ready(kubectl, a, "certificate/from-cluster-issuer")
    verify_chain(kubectl, a, "from-cluster-issuer-tls", tmp_path)

    # a manual renewal
    kubectl("annotate", "certificate", "web", "-n", a, "certmint.io/renew=1")
    kubectl("wait", "-n", a, "--for=jsonpath={.status.revision}=2", "--timeout=60s", "certificate/web", timeout=90)
    wait_ready(kubectl, a, "certificate/web")
    assert secret_data(kubectl, a, "web-tls")["tls.crt"] != root["tls.crt"]

    # events, recorded by this operator (its POD_NAME), in the watched namespaces and in "default"
    def web_reasons(events: list[dict]) -> set[str]:
        return {e["reason"] for e in events if e.get("reportingInstance") == IDENTITY
                and e["involvedObject"]["name"] == "web" and e["metadata"]["namespace"] == a}

    events = wait_for_events(kubectl, None, lambda events: {"Issuing", "Issued"} <= web_reasons(events))
    ours = [e for e in events if e.get("reportingInstance") == IDENTITY]
    assert [e for e in ours if e["involvedObject"]["kind"] == "ClusterIssuer"
            and e["metadata"]["namespace"] == "default"], "no event on the ClusterIssuer"
    # and nothing was refused along the way (kopf's watches included)
    log = sa_operator.log_text()
    assert "forbidden" not in log.lower() and " 403" not in log, log[-4000:]
    assert sa_operator.proc.poll() is None
    assert any(line.startswith("certmanager_certificate_ready_status{") and line.endswith('condition="True"} 1.0')
               for line in sa_operator.metrics().splitlines())


def test_uninstall_keeps_crds_certificates_and_secrets(sa_operator, sa_kubeconfig, helm, kubectl):
    """Last: helm uninstall removes the release's objects, and only those."""
    a, _ = WATCHED
    apply(kubectl, a, ISSUANCE.replace("name: web", "name: kept").replace("web-tls", "kept-tls"))
    with operator_log_on_failure(sa_operator):
        wait_ready(kubectl, a, "certificate/kept")
    selector = "certmint.io/certificate-name"
    issued = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["data"]
              for s in get_json(kubectl, "secrets", "-A", "-l", selector)["items"]}
    assert (a, "kept-tls") in issued
    certificates = kubectl("get", "certificates", "-A", "-o", "name").stdout.split()
    sa_operator.stop()

    helm("uninstall", RELEASE, "-n", RELEASE_NS)
    assert helm("list", "-n", RELEASE_NS, "-q").stdout.strip() == ""
    for kind, name, ns in (("deployment", "certmint", RELEASE_NS), ("serviceaccount", "certmint", RELEASE_NS),
                           ("clusterrole", "certmint-controller", None),
                           ("clusterrolebinding", "certmint-clusterissuers", None),
                           ("rolebinding", "certmint-controller", a), ("role", "certmint-leader-election", RELEASE_NS)):
        gone = kubectl("get", kind, name, *(["-n", ns] if ns else []), check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, f"{kind} {name} survived the uninstall"
    # kept: the CRDs (so every Certificate), the Certificates, and the Secrets workloads mount
    for crd in CRD_NAMES:
        kubectl("get", "crd", crd)
    assert kubectl("get", "certificates", "-A", "-o", "name").stdout.split() == certificates
    after = {(s["metadata"]["namespace"], s["metadata"]["name"]): s["data"]
             for s in get_json(kubectl, "secrets", "-A", "-l", selector)["items"]}
    assert after == issued
    # and the ServiceAccount's tokens died with it
    deadline = time.monotonic() + 10
    while True:
        denied = run_kubectl(AsServiceAccount(sa_kubeconfig), "get", "certificates", "-n", a, check=False)
        if "Unauthorized" in denied.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert denied.returncode != 0 and "Unauthorized" in denied.stderr, denied.stderr
