"""`certmint operator --kubeconfig PATH` on its own, as the README documents it: no KUBECONFIG in
the environment and no ~/.kube/config to fall back on. Everything the operator watches, kopf's
watches included, must come from that file. On a control plane of its own, so no other operator
issues the certificates in its place."""
from __future__ import annotations

import time

import pytest
from conftest import apply, control_plane, run_kubectl, start_operator
from manifests import SELF_SIGNED_ISSUER, documents


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    with control_plane(tmp_path_factory.mktemp("kubeconfig-cluster")) as c:
        yield c


def is_ready(cluster, namespace: str, kind_name: str) -> bool:
    status = run_kubectl(cluster, "get", "-n", namespace, kind_name, "-o",
                         "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False).stdout
    return status == "True"


def test_the_kubeconfig_flag_alone_is_enough(private, tmp_path):
    home = tmp_path / "home"  # no ~/.kube/config to fall back on
    home.mkdir()
    ns = "flag"
    run_kubectl(private, "create", "namespace", ns)
    op = start_operator(private, tmp_path / "operator.log", env={"KUBECONFIG": None, "HOME": str(home)})
    try:
        # created after start-up: only a running watch can see them
        def kubectl(*args, **kwargs):
            return run_kubectl(private, *args, **kwargs)

        apply(kubectl, ns, documents(SELF_SIGNED_ISSUER, """apiVersion: certmint.io/v1
kind: Certificate
metadata: {name: web}
spec:
  secretName: web-tls
  commonName: web.flag.svc
  privateKey: {algorithm: ECDSA}
  issuerRef: {name: self}"""))
        deadline = time.monotonic() + 60
        while not (is_ready(private, ns, "issuer/self") and is_ready(private, ns, "certificate/web")):
            assert op.proc.poll() is None, f"operator exited with {op.proc.returncode}:\n{op.log_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"issuer Ready={is_ready(private, ns, 'issuer/self')}, "
                f"certificate Ready={is_ready(private, ns, 'certificate/web')} 60 s after they were created; "
                f"operator log:\n{op.log_text()[-3000:]}")
            time.sleep(0.5)
        secret = run_kubectl(private, "get", "secret", "-n", ns, "web-tls", "-o", "jsonpath={.data.tls\\.crt}").stdout
        assert secret, "the Certificate is Ready but its Secret holds no certificate"
    finally:
        op.stop()
    log = op.log_text()
    assert "LoginError" not in log, log[-3000:]
