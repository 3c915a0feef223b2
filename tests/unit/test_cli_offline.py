"""The CLI's pure parts: flags, durations, tables, colour, rows and orphans, start-up cost, and
`verify` on files (chains certmint.pki issues, checked by cryptography's verifier)."""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from certmint import cli
from certmint.cli import certificates, cleanup, common, inspect, revoke, verify, version
from certmint.pki import (
    ECDSA,
    RSA,
    CASigner,
    CertificateTemplate,
    KeySpec,
    Subject,
    certificates_pem,
    issue,
)
from certmint.pki import generate_key as _generate_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certmint.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, check=False)


# --- flags and parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", dt.timedelta(days=30)), ("2w", dt.timedelta(weeks=2)), ("1d12h", dt.timedelta(days=1, hours=12)),
    ("72h", dt.timedelta(hours=72)), ("90m", dt.timedelta(minutes=90)), ("1.5h", dt.timedelta(minutes=90)),
    ("0", dt.timedelta(0)),
])
def test_durations_take_days_and_weeks_besides_go_units(text, expected):
    assert common.duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "30", "d", "30x", "-5d", "5d-1h"])
def test_bad_durations_are_rejected_with_an_example(text):
    with pytest.raises(argparse.ArgumentTypeError, match="use e.g. 30d"):
        common.duration(text)


def test_every_command_of_the_issue_is_there():
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"operator", "status", "list", "renew", "inspect", "verify", "revoke", "cleanup",
                                "check", "version", "completion"}


def test_kubectl_flags_go_before_or_after_the_command():
    p = cli.parser()
    before = p.parse_args(["-n", "prod", "--context", "east", "list", "-A", "-l", "app=web", "-o", "wide"])
    assert (before.namespace, before.context, before.all_namespaces, before.selector, before.output) == \
        ("prod", "east", True, "app=web", "wide")
    after = p.parse_args(["status", "web", "-n", "prod", "--kubeconfig", "/k"])
    assert (after.namespace, after.kubeconfig, after.name) == ("prod", "/k", "web")
    # A flag given before the command is not reset by the command's own (unset) copy.
    assert p.parse_args(["-n", "prod", "status", "web"]).namespace == "prod"
    assert not hasattr(p.parse_args(["status", "web"]), "namespace")


def test_usage_errors_exit_2_with_one_line_and_a_pointer_to_help():
    result = run_cli("list", "-o", "html")
    assert result.returncode == 2
    first, pointer = result.stderr.splitlines()
    assert first.startswith("certmint list: error: argument -o/--output: invalid choice: 'html'")
    assert pointer == "See 'certmint list --help'."


def test_the_operator_command_keeps_its_flags_and_python_m_entry_point():
    args = cli.parser().parse_args(["operator", "--backoff-initial", "5s", "--namespace", "a", "--namespace", "b"])
    assert args.backoff_initial == dt.timedelta(seconds=5) and args.namespaces == ["a", "b"]
    assert args.handler is cli.operator.start
    result = run_cli("operator", "--help")
    assert result.returncode == 0 and "--cluster-resource-namespace" in result.stdout


# --- start-up -----------------------------------------------------------------------------------


def test_help_imports_neither_the_kubernetes_client_nor_cryptography():
    probe = ("import sys, contextlib, io\n"
             "from certmint.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
             "print(sorted(m for m in ('kubernetes', 'cryptography', 'yaml', 'certmint.model') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_help_starts_well_under_a_second():
    best = min(_timed(run_cli, "--help") for _ in range(3))
    assert best < 0.5, f"certmint --help took {best:.2f} s"


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    assert fn(*args).returncode == 0
    return time.perf_counter() - started


def test_without_the_operator_extra_the_cli_says_what_to_install(tmp_path):
    # Modules that fail to import, as on a machine with a plain `pip install certmint`.
    for name in ("kubernetes", "cryptography"):
        (tmp_path / f"{name}.py").write_text(f'raise ImportError("No module named {name}")\n')
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO / 'operator'}"}
    for args in (["list"], ["status", "web"], ["verify", "x.pem", "--roots", "ca.pem"], ["list", "--expiring", "3d"]):
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip().endswith("pip install 'certmint[operator]'"), result.stderr
        assert "Traceback" not in result.stderr
    assert run_cli("--help", env=env).returncode == 0
    assert run_cli("version", "--client", env=env).returncode == 0


# --- output -------------------------------------------------------------------------------------


def test_table_aligns_columns_like_kubectl():
    text = common.table(("name", "ready", "days left"), [("web", "True", 89), ("a-longer-name", "False", None)])
    assert text.splitlines() == [
        "NAME            READY   DAYS LEFT",
        "web             True    89",
        "a-longer-name   False",
    ]


def test_table_ignores_colour_codes_when_aligning():
    style = common.Style(enabled=True)
    text = common.table(("ready", "name"), [(style.status("True"), "a"), (style.status("Unknown"), "b")])
    lines = text.splitlines()
    assert lines[1] == "\033[32mTrue\033[0m      a"
    assert lines[2] == "\033[33mUnknown\033[0m   b"


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert common.Style(Terminal()).enabled
    with open(os.devnull, "w") as devnull:
        assert not common.Style(devnull).enabled
    monkeypatch.setenv("NO_COLOR", "1")
    assert not common.Style(Terminal()).enabled
    assert common.Style(enabled=False).red("x") == "x"


def test_ages_and_relative_times():
    assert common.human_delta(dt.timedelta(seconds=45)) == "45s"
    assert common.human_delta(dt.timedelta(minutes=12)) == "12m"
    assert common.human_delta(dt.timedelta(hours=5)) == "5h"
    assert common.human_delta(dt.timedelta(days=59, hours=23)) == "59d"
    assert common.relative(NOW + dt.timedelta(days=3, minutes=1), NOW) == "in 3d"
    assert common.relative(NOW - dt.timedelta(hours=3), NOW) == "3h ago"
    assert common.days_left(NOW + dt.timedelta(days=89, hours=23), NOW) == 89
    assert common.days_left(NOW - dt.timedelta(hours=1), NOW) == -1


def _certificate(name: str, namespace: str = "ns", not_after: str | None = None, ready: str = "True",
                 issuer: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"secretName": f"{name}-tls", "issuerRef": issuer or {"name": "ca"}},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "Ready"}],
                       **({"notAfter": not_after} if not_after else {})}}


def test_rows_sort_by_expiry_with_unissued_last():
    items = [_certificate("later", not_after="2027-06-01T00:00:00Z"),
             _certificate("never", ready="False"),
             _certificate("soon", not_after="2026-12-02T00:00:00Z", issuer={"name": "root", "kind": "ClusterIssuer"})]
    rows = certificates.certificate_rows(items, dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert [r["name"] for r in rows] == ["soon", "later", "never"]
    assert [r["daysLeft"] for r in rows] == [1, 182, None]
    assert rows[0]["issuer"] == "ClusterIssuer/root" and rows[1]["issuer"] == "ca"
    text = certificates.render_list(rows, all_namespaces=True, wide=False, style=common.Style(enabled=False))
    assert text.splitlines()[0].split() == ["NAMESPACE", "NAME", "READY", "ISSUER", "NOT", "AFTER", "DAYS", "LEFT"]
    assert text.splitlines()[3].split() == ["ns", "never", "False", "ca"]


def test_orphans_are_secrets_no_certificate_writes():
    def secret(name: str, owner: str, namespace: str = "ns") -> dict:
        return {"metadata": {"name": name, "namespace": namespace, "uid": name,
                             "labels": {cleanup.CERTIFICATE_LABEL: owner}}}

    certs = [_certificate("web"), _certificate("moved")]
    certs[1]["spec"]["secretName"] = "moved-tls-v2"
    found = cleanup.orphans([secret("web-tls", "web"), secret("gone-tls", "gone"), secret("moved-tls", "moved"),
                             secret("web-tls", "web", namespace="other")], certs)
    assert [(o["namespace"], o["name"], o["reason"]) for o in found] == [
        ("ns", "gone-tls", "Certificate gone does not exist"),
        ("ns", "moved-tls", "Certificate moved now writes Secret moved-tls-v2"),
        ("other", "web-tls", "Certificate web does not exist"),
    ]


@pytest.mark.parametrize(("image", "tag"), [
    ("ghcr.io/example/certmint:0.2.0", "0.2.0"), ("registry:5000/certmint:1.0", "1.0"),
    ("registry:5000/certmint", None), ("certmint@sha256:abc", None), ("certmint:2.0@sha256:abc", "2.0"),
])
def test_operator_version_from_the_image_tag(image, tag):
    assert version.image_tag(image) == tag


def test_last_trigger_comes_from_the_issuing_condition():
    assert certificates._last_trigger({"status": "False", "reason": "Issued", "message":
                                       "The certificate has been successfully issued (revision 3, trigger Renewing)"}) \
        == "Renewing"
    assert certificates._last_trigger({"status": "True", "reason": "ManuallyTriggered"}) == "ManuallyTriggered"
    assert certificates._last_trigger({}) is None


# --- verify and inspect on files ----------------------------------------------------------------


@functools.cache
def generate_key(algorithm: str = ECDSA, size: int | None = 256):
    return _generate_key(KeySpec(algorithm, size))


def make_ca(name: str, parent: CASigner | None = None, algorithm: str = ECDSA) -> CASigner:
    key = _generate_key(KeySpec(algorithm, 256 if algorithm == ECDSA else 2048))
    template = CertificateTemplate(subject=Subject(common_name=name), is_ca=True, duration=365 * DAY,
                                   usages=("cert sign", "crl sign"))
    certificate = issue(template, key, parent, NOW).certificate
    return CASigner(certificate, key, (parent.certificate, *parent.chain) if parent else ())


@functools.cache
def chain() -> tuple[CASigner, CASigner]:
    root = make_ca("Unit Root")
    return root, make_ca("Unit Intermediate", root)


def make_leaf(usages=("digital signature", "server auth"), dns=("api.example.com", "*.apps.example.com"),
              ips=("10.0.0.7",), signer: CASigner | None = None, duration=30 * DAY, now=NOW) -> x509.Certificate:
    template = CertificateTemplate(subject=Subject(common_name="api"), dns_names=dns, ip_addresses=ips,
                                   duration=duration, usages=usages)
    return issue(template, generate_key(), signer or chain()[1], now).certificate


def write(tmp_path: Path, name: str, *certs: x509.Certificate) -> str:
    path = tmp_path / name
    path.write_bytes(certificates_pem(list(certs)))
    return str(path)


def tls_files(tmp_path: Path, leaf: x509.Certificate) -> tuple[str, str]:
    """tls.crt (leaf then intermediate) and ca.crt (the root), as certmint writes them."""
    root, intermediate = chain()
    return write(tmp_path, "tls.crt", leaf, intermediate.certificate), write(tmp_path, "ca.crt", root.certificate)


def verify_args(*args: str) -> argparse.Namespace:
    return cli.parser().parse_args(["verify", *args])


def test_verify_a_tls_crt_against_its_ca_crt_without_extra_flags(tmp_path, capsys):
    tls_crt, ca_crt = tls_files(tmp_path, make_leaf())
    assert verify.verify(verify_args(tls_crt, "--roots", ca_crt)) == 0
    assert capsys.readouterr().out == "verified: CN=api -> CN=Unit Intermediate -> CN=Unit Root\n"


@pytest.mark.parametrize(("flags", "shown"), [
    (["--host", "api.example.com", "--purpose", "server"], "verified for server auth, valid for api.example.com"),
    (["--host", "x.apps.example.com"], "valid for x.apps.example.com"),
    (["--ip", "10.0.0.7", "--purpose", "server"], "valid for 10.0.0.7"),
    (["--purpose", "server"], "verified for server auth"),
])
def test_verify_host_ip_and_purpose(tmp_path, capsys, flags, shown):
    tls_crt, ca_crt = tls_files(tmp_path, make_leaf())
    assert verify.verify(verify_args(tls_crt, "--roots", ca_crt, *flags)) == 0
    assert shown in capsys.readouterr().out


@pytest.mark.parametrize(("leaf_kwargs", "flags", "reason"), [
    ({}, ["--host", "other.example.com"], "other.example.com is not among the certificate's DNS names"),
    ({}, ["--host", "a.b.apps.example.com"], "is not among the certificate's DNS names"),
    ({}, ["--ip", "10.0.0.8"], "10.0.0.8 is not among the certificate's IP addresses"),
    ({}, ["--purpose", "client"], "the certificate is not for client auth"),
    ({"usages": ("digital signature", "client auth")}, ["--purpose", "server"], "not for server auth"),
    ({"usages": ("digital signature", "client auth")}, ["--host", "api.example.com", "--purpose", "server"],
     "not for server auth"),
    ({"now": NOW - 40 * DAY}, [], "the certificate expired at"),
    ({"now": NOW + 2 * DAY}, [], "the certificate is not valid before"),
])
def test_verify_failures_say_why_in_one_line(tmp_path, leaf_kwargs, flags, reason):
    tls_crt, ca_crt = tls_files(tmp_path, make_leaf(**leaf_kwargs))
    with pytest.raises(verify.VerifyError, match=reason) as failure:
        verify.verify(verify_args(tls_crt, "--roots", ca_crt, *flags))
    assert failure.value.code == common.FAILED and "\n" not in str(failure.value)


def test_verify_a_client_certificate_for_client_auth(tmp_path):
    tls_crt, ca_crt = tls_files(tmp_path, make_leaf(usages=("digital signature", "client auth"), dns=(),
                                                    ips=("10.0.0.7",)))
    assert verify.verify(verify_args(tls_crt, "--roots", ca_crt, "--purpose", "client")) == 0


def test_verify_needs_the_intermediate_and_the_right_root(tmp_path):
    root, intermediate = chain()
    leaf = make_leaf()
    alone = write(tmp_path, "leaf.crt", leaf)
    ca_crt = write(tmp_path, "ca.crt", root.certificate)
    with pytest.raises(verify.VerifyError, match="no chain to the given roots"):
        verify.verify(verify_args(alone, "--roots", ca_crt))
    more = write(tmp_path, "intermediates.crt", intermediate.certificate)
    assert verify.verify(verify_args(alone, "--roots", ca_crt, "--intermediates", more)) == 0
    stranger = write(tmp_path, "stranger.crt", make_ca("Stranger").certificate)
    with pytest.raises(verify.VerifyError, match="no chain to the given roots"):
        verify.verify(verify_args(write(tmp_path, "tls.crt", leaf, intermediate.certificate), "--roots", stranger))


def test_verify_a_self_signed_certificate_against_itself(tmp_path):
    template = CertificateTemplate(subject=Subject(common_name="web"), dns_names=("web.example.com",),
                                   duration=30 * DAY)
    web = issue(template, generate_key(), None, NOW).certificate
    path = write(tmp_path, "web.crt", web)
    assert verify.verify(verify_args(path, "--roots", path, "--host", "web.example.com")) == 0


def test_verify_rsa_chain(tmp_path):
    root = make_ca("RSA Root", algorithm=RSA)
    template = CertificateTemplate(subject=Subject(common_name="rsa"), dns_names=("rsa.example.com",),
                                   duration=30 * DAY, usages=("digital signature", "key encipherment", "server auth"))
    leaf = issue(template, generate_key(RSA, 2048), root, NOW).certificate
    assert verify.verify(verify_args(write(tmp_path, "tls.crt", leaf), "--roots",
                                     write(tmp_path, "ca.crt", root.certificate), "--host", "rsa.example.com")) == 0


def make_crl(signer: CASigner, revoked: list[int], next_update: dt.timedelta = DAY,
             issuer_name: x509.Name | None = None):
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer_name or signer.certificate.subject)
               .last_update(NOW - dt.timedelta(hours=2)).next_update(NOW + next_update))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW - dt.timedelta(hours=1))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    return builder.sign(signer.key, hashes.SHA256())


def write_crl(tmp_path: Path, crl, der: bool = False) -> str:
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / ("ca.crl" if der else "ca.crl.pem")
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
    return str(path)


def test_verify_with_a_crl(tmp_path, capsys):
    root, intermediate = chain()
    leaf = make_leaf()
    tls_crt, ca_crt = tls_files(tmp_path, leaf)
    clean = write_crl(tmp_path, make_crl(intermediate, [leaf.serial_number + 1]))
    assert verify.verify(verify_args(tls_crt, "--roots", ca_crt, "--crl", clean)) == 0
    assert ", not on the CRL:" in capsys.readouterr().out

    listed = write_crl(tmp_path, make_crl(intermediate, [leaf.serial_number]), der=True)
    with pytest.raises(verify.VerifyError, match=rf"serial {leaf.serial_number:x} is revoked since .*key_compromise"):
        verify.verify(verify_args(tls_crt, "--roots", ca_crt, "--crl", listed))

    # A CRL proves something only when it is the issuer's, signed by it, and current.
    cases = [(make_crl(root, [leaf.serial_number]), "the CRL is issued by CN=Unit Root, not by"),
             (make_crl(root, [], issuer_name=intermediate.certificate.subject), "signature does not verify"),
             (make_crl(intermediate, [], next_update=-dt.timedelta(hours=1)), "the CRL is out of date")]
    for crl, reason in cases:
        with pytest.raises(verify.VerifyError, match=reason):
            verify.verify(verify_args(tls_crt, "--roots", ca_crt, "--crl", write_crl(tmp_path, crl)))


def test_verify_unreadable_inputs_are_usage_errors(tmp_path):
    not_pem = tmp_path / "junk.pem"
    not_pem.write_text("hello")
    with pytest.raises(common.UsageError, match="cannot read"):
        verify.verify(verify_args(str(tmp_path / "missing.pem"), "--roots", str(not_pem)))
    with pytest.raises(common.UsageError, match="not a valid PEM"):
        verify.verify(verify_args(str(not_pem), "--roots", str(not_pem)))
    result = run_cli("verify", str(not_pem), "--roots", str(not_pem))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_inspect_reports_what_the_certificate_says(tmp_path):
    root, intermediate = chain()
    leaf = make_leaf()
    report = inspect.inspection("tls.crt", [leaf, intermediate.certificate], [root.certificate], reference=NOW)
    c = report["certificate"]
    assert c["subject"] == "CN=api" and c["issuer"] == "CN=Unit Intermediate"
    assert c["serial"] == f"{leaf.serial_number:x}"
    assert c["sha256Fingerprint"] == leaf.fingerprint(hashes.SHA256()).hex(":").upper()
    assert c["key"] == "ECDSA 256" and c["isCA"] is False
    assert c["sans"] == ["DNS:api.example.com", "DNS:*.apps.example.com", "IP:10.0.0.7"]
    assert c["keyUsages"] == ["digital signature"] and c["extendedKeyUsages"] == ["server auth"]
    assert c["daysLeft"] == 29
    assert [link["subject"] for link in report["chain"]] == ["CN=api", "CN=Unit Intermediate"]
    assert report["verifies"] == {"ok": True, "to": "CN=Unit Root"}
    assert report["crl"]["status"] == "not published"
    text = inspect.render(report, common.Style(enabled=False))
    assert "Verifies:               yes, to CN=Unit Root" in text and "(29 days left)" in text

    stranger = make_ca("Stranger").certificate
    failed = inspect.inspection("tls.crt", [leaf, intermediate.certificate], [stranger], reference=NOW)
    assert failed["verifies"]["ok"] is False and "no chain" in failed["verifies"]["reason"]


def test_inspect_file_from_the_command_line(tmp_path):
    tls_crt, ca_crt = tls_files(tmp_path, make_leaf())
    result = run_cli("inspect", tls_crt, "--ca", ca_crt, "--no-crl")
    assert result.returncode == 0, result.stderr
    assert "Verifies:               yes, to CN=Unit Root" in result.stdout
    assert "Revocation (CRL):       not checked" in result.stdout
    bad = run_cli("inspect", "a", "b", "c")
    assert bad.returncode == 2 and "inspect takes `secret NAME` or one FILE" in bad.stderr


def test_api_errors_read_as_one_line_each():
    class ApiError(Exception):
        def __init__(self, status: int, message: str):
            self.status, self.message = status, message

    assert str(common.api_error(ApiError(0, "Connection refused\nmore"), "x")) == \
        "cannot reach the API server: Connection refused"
    assert str(common.api_error(ApiError(404, 'certificates.certmint.io "web" not found'), "certificate 'web'")) == \
        "certificate 'web' not found"
    assert "certmint check api" in str(common.api_error(
        ApiError(404, "the server could not find the requested resource"), "certificate 'web'"))
    assert str(common.api_error(ApiError(403, "forbidden!"))) == "forbidden: forbidden!"


# --- revoke -------------------------------------------------------------------------------------


def test_revoke_reasons_are_the_crds():
    from certmint.revocation.spec import REASONS

    assert revoke.REASONS == REASONS
    assert revoke.DEFAULT_REASON == "unspecified"


def test_revoke_flags():
    p = cli.parser()
    args = p.parse_args(["revoke", "agent-01", "--reason", "KEYCOMPROMISE", "--all-valid", "--wait"])
    assert (args.name, args.reason, args.all_valid, args.wait, args.dry_run) == \
        ("agent-01", "keyCompromise", True, True, "none")
    assert args.timeout == dt.timedelta(seconds=60) and args.output == "text"
    assert p.parse_args(["revoke", "x"]).reason == "unspecified"
    by_serial = p.parse_args(["revoke", "--issuer", "clusterissuer/root", "--serial", "0A"])
    assert by_serial.issuer == ("ClusterIssuer", "root") and by_serial.name is None
    assert p.parse_args(["revoke", "--issuer", "ca", "--serial", "0A"]).issuer == ("Issuer", "ca")
    # kubectl's --dry-run[=client|server]; a bare --dry-run leaves the next word to NAME.
    assert p.parse_args(["revoke", "x", "--dry-run"]).dry_run == "client"
    assert p.parse_args(["revoke", "x", "--dry-run=server"]).dry_run == "server"
    bare = p.parse_args(["revoke", "--dry-run", "agent-01", "-o", "yaml"])
    assert (bare.dry_run, bare.operand, bare.name) == ("client", "agent-01", None)


@pytest.mark.parametrize(("args", "message"), [
    (["revoke", "x", "--issuer", "Issuer/ca", "--serial", "0A"], "not both"),
    (["revoke"], "give NAME (a Certificate) or --issuer"),
    (["revoke", "--serial", "0A"], "--issuer and --serial go together"),
    (["revoke", "--issuer", "ca"], "--issuer and --serial go together"),
    (["revoke", "--issuer", "ca", "--serial", "0A", "--all-valid"], "--all-valid applies to NAME"),
    (["revoke", "x", "--reason", "removeFromCRL"], "invalid choice: 'removeFromCRL'"),
    (["revoke", "--issuer", "Vault/x", "--serial", "0A"], "use Issuer/NAME or ClusterIssuer/NAME"),
])
def test_revoke_flag_misuse_exits_2_before_reaching_a_cluster(args, message):
    result = run_cli(*args, env={"KUBECONFIG": "/nonexistent"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_revocation_objects_as_the_crd_takes_them():
    spec = revoke.revocation_spec("keyCompromise", certificate="agent-01")
    assert spec == {"certificateName": "agent-01", "reason": "keyCompromise"}  # Current: the CRD's default
    assert revoke.revocation_spec("superseded", certificate="a", all_valid=True) == \
        {"certificateName": "a", "revisions": "AllValid", "reason": "superseded"}
    by_serial = revoke.revocation_spec("unspecified", issuer=("ClusterIssuer", "root"), serial="serial=5f:3a:09")
    assert by_serial == {"issuerRef": {"name": "root", "kind": "ClusterIssuer"}, "serialNumber": "5F3A09",
                         "reason": "unspecified"}
    assert revoke.revocation_object("n", "ns", spec) == {
        "apiVersion": "certmint.io/v1", "kind": "CertificateRevocation",
        "metadata": {"name": "n", "namespace": "ns"}, "spec": spec}
    # The operator reads what the command writes.
    from certmint.revocation.spec import parse_revocation_spec

    assert parse_revocation_spec(by_serial).serial == 0x5F3A09
    assert parse_revocation_spec(spec).certificate_name == "agent-01"


@pytest.mark.parametrize(("text", "normal"), [
    ("5F3A09", "5F3A09"), ("5f3a09", "5F3A09"), ("f3a09", "0F3A09"), ("00ab", "AB"), ("5f:3a:09", "5F3A09"),
    ("serial=0A1B", "0A1B"), (" 0a1b ", "0A1B"),
    ("xyz", "xyz"), ("0x5f", "0x5f"), ("5f:3a:9", "5f:3a:9"),  # left as given: the API server says what is wrong
])
def test_serials_are_written_as_openssl_prints_them(text, normal):
    assert revoke.normal_serial(text) == normal


def test_revocation_names_are_deterministic_and_readable():
    current = revoke.revocation_spec("keyCompromise", certificate="agent-01")
    assert revoke.revocation_name(current, 1) == "agent-01-r1-keycompromise"
    assert revoke.revocation_name(current, 1) == revoke.revocation_name(dict(current), 1)
    assert revoke.revocation_name(current, None) == "agent-01-keycompromise"
    every = revoke.revocation_spec("superseded", certificate="web.example.com", all_valid=True)
    assert revoke.revocation_name(every, 3) == "web.example.com-all-r3-superseded"
    assert revoke.revocation_name(every, None) == "web.example.com-all-superseded"
    serial = revoke.revocation_spec("cACompromise", issuer=("ClusterIssuer", "root"), serial="5f:3a:09")
    assert revoke.revocation_name(serial) == "root-5f3a09-cacompromise"
    # An invalid serial or certificate name still makes a valid object name, so the API server's
    # message is about the field, not the name.
    assert revoke.revocation_name(revoke.revocation_spec("unspecified", issuer=("Issuer", "ca"), serial="x_y!")) == \
        "ca-x-y-unspecified"
    assert revoke.revocation_name(revoke.revocation_spec("unspecified", certificate="Bad_Name"), 2) == \
        "bad-name-r2-unspecified"


def test_long_revocation_names_are_cut_and_stay_unique():
    import re

    long_a, long_b = "a" * 240 + "-x", "a" * 240 + "-y"
    names = [revoke.revocation_name(revoke.revocation_spec("keyCompromise", certificate=n), 7)
             for n in (long_a, long_b)]
    for name in names:
        assert len(name) <= 253 and name.endswith("-r7-keycompromise")
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name)
    assert names[0] != names[1]
    serial = revoke.revocation_spec("unspecified", issuer=("Issuer", "i" * 253), serial="AB" * 20)
    name = revoke.revocation_name(serial)
    assert len(name) <= 253 and name.endswith("-" + "ab" * 20 + "-unspecified")


def test_revoked_text_names_the_serials_and_where_the_crl_is():
    obj = {"spec": {"certificateName": "agent-01", "reason": "keyCompromise"},
           "status": {"revokedAt": "2026-11-30T12:40:07Z", "crlNumber": 7,
                      "serials": [{"serialNumber": "5F3A09", "revision": 1, "notAfter": "2027-02-28T12:00:00Z",
                                   "issuerRef": {"name": "agents-ca", "kind": "Issuer"}}]}}
    text = revoke.revoked_text(obj, "netstress")
    assert text.splitlines() == [
        "Revoked:  the current certificate of Certificate agent-01, reason keyCompromise, at 2026-11-30T12:40:07Z",
        "  serial 5F3A09  revision 1, not after 2027-02-28T12:00:00Z, Issuer netstress/agents-ca",
        "CRL (CRL number 7 and later): ConfigMap netstress/agents-ca-crl, key ca.crl; "
        "HTTP /crls/netstress/agents-ca.crl on the operator's metrics port",
    ]
    cluster_wide = {"spec": {"issuerRef": {"name": "root", "kind": "ClusterIssuer"}, "serialNumber": "0A",
                             "reason": "superseded"},
                    "status": {"serials": [{"serialNumber": "0A", "issuerRef": {"name": "root",
                                                                                 "kind": "ClusterIssuer"}}]}}
    lines = revoke.revoked_text(cluster_wide, "ns", lambda kind, name: "certmint").splitlines()
    assert lines[1] == "  serial 0A  ClusterIssuer root"
    assert lines[2] == "CRL: ConfigMap certmint/root-crl, key ca.crl; HTTP /crls/root.crl on the operator's metrics port"
    unknown = revoke.revoked_text(cluster_wide, "ns").splitlines()[2]
    assert "root-crl (in the cluster resource namespace)" in unknown
