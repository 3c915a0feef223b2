"""`revoke`: creates a CertificateRevocation, the API object through which certmint revokes.

A thin client: the object is the record, the CRD's schema and CEL rules validate it, and the
operator does the revoking (the CRL, the re-issue). The command builds the object, creates it,
and with --wait reads back its `Revoked` condition and the serials it covers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import re
import sys
import time
from typing import Any

from certmint.cli.common import (
    FAILED,
    GROUP,
    VERSION,
    CliError,
    Cluster,
    UsageError,
    api_error,
    condition,
    connect,
    dump,
    duration,
    human_delta,
    kube_flags,
    output_flag,
)

RESOURCE = "certificaterevocation.certmint.io"
PLURAL = "certificaterevocations"
FIELD_MANAGER = "certmint-cli"
#: RFC 5280's reasons as the CRD accepts them (certmint.revocation.spec.REASONS, which imports
#: cryptography: too slow for building the parser; a unit test keeps the two equal).
REASONS = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise")
#: As `step ca revoke` and `openssl ca -revoke`: a reason the user did not state is not recorded
#: as a compromise. The CRL entry then carries no reason code, as RFC 5280 asks for unspecified.
DEFAULT_REASON = "unspecified"
ISSUER_KINDS = ("Issuer", "ClusterIssuer")
PENDING = "Pending"  # the only False reason that resolves by itself within seconds
MAX_NAME = 253  # a custom resource's name is a DNS subdomain


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "revoke", help="revoke a Certificate's certificate, or an issuer's serial number (a CertificateRevocation)",
        description="Creates a CertificateRevocation: NAME revokes the Certificate's current certificate (which the "
                    "operator then re-issues with a new key), or with --all-valid every unexpired one it was issued; "
                    "--issuer KIND/NAME --serial HEX revokes one certificate of a CA issuer. The issuer lists it on "
                    "its CRL (ConfigMap <issuer>-crl and /crls/... on the operator's metrics port).")
    p.add_argument("name", nargs="?", metavar="NAME", help="the Certificate whose certificate is revoked")
    p.add_argument("--reason", type=_reason, choices=REASONS, default=DEFAULT_REASON, metavar="REASON",
                   help=f"RFC 5280 reason: {', '.join(REASONS)} (default {DEFAULT_REASON}, as step and openssl)")
    p.add_argument("--all-valid", action="store_true",
                   help="with NAME: every unexpired certificate it was issued (revisions: AllValid)")
    p.add_argument("--issuer", type=_issuer, metavar="KIND/NAME",
                   help="with --serial: the issuer that signed it, Issuer/NAME (this namespace) or ClusterIssuer/NAME")
    p.add_argument("--serial", metavar="HEX", help="with --issuer: the serial number, as openssl x509 -serial prints it")
    p.add_argument("--name", dest="object_name", metavar="OBJECT",
                   help="the CertificateRevocation's name (default: from the target and the reason)")
    p.add_argument("--dry-run", nargs="?", action=_DryRun, default="none", metavar="client|server",
                   help="--dry-run (or =client): print the object, create nothing; =server: the API server validates "
                        "it too, nothing is stored")
    p.add_argument("--wait", action="store_true", help="wait until the revocation is in effect (Revoked=True)")
    p.add_argument("--timeout", type=duration, default=dt.timedelta(seconds=60), help="how long --wait waits (default 60s)")
    kube_flags(p)
    output_flag(p, choices=("text", "json", "yaml"), default="text")
    p.set_defaults(handler=revoke)


DRY_RUN = ("none", "client", "server")


class _DryRun(argparse.Action):
    """kubectl's --dry-run[=client|server]. As with kubectl, a bare --dry-run does not take the next
    word as its value: `revoke --dry-run agent-01` names the Certificate agent-01."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None or values in DRY_RUN:
            setattr(namespace, self.dest, values or "client")
            return
        setattr(namespace, self.dest, "client")
        namespace.operand = values  # the word after a bare --dry-run: NAME


def _reason(text: str) -> str:
    """Any capitalisation of a reason (KeyCompromise, keycompromise) as the CRD spells it."""
    return next((r for r in REASONS if r.lower() == text.lower()), text)


def _issuer(text: str) -> tuple[str, str]:
    """KIND/NAME, or NAME alone for an Issuer (the CRD's default kind)."""
    kind, _, name = text.rpartition("/")
    chosen = next((k for k in ISSUER_KINDS if k.lower() == (kind or "Issuer").lower()), None)
    if chosen is None or not name:
        raise argparse.ArgumentTypeError(f"invalid issuer {text!r}: use Issuer/NAME or ClusterIssuer/NAME")
    return chosen, name


# --- the object (pure) --------------------------------------------------------------------------


def revocation_spec(reason: str, certificate: str | None = None, all_valid: bool = False,
                    issuer: tuple[str, str] | None = None, serial: str | None = None) -> dict[str, Any]:
    """The spec, as the CRD takes it: exactly one target and the reason."""
    if certificate is not None:
        spec: dict[str, Any] = {"certificateName": certificate}
        if all_valid:
            spec["revisions"] = "AllValid"  # Current is the CRD's default, left out as kubectl would
    else:
        assert issuer is not None and serial is not None
        spec = {"issuerRef": {"name": issuer[1], "kind": issuer[0]}, "serialNumber": normal_serial(serial)}
    spec["reason"] = reason
    return spec


def revocation_object(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CertificateRevocation",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def normal_serial(text: str) -> str:
    """The serial as `openssl x509 -noout -serial` prints it (upper-case hex, even digits); `serial=`
    (that command's prefix) is dropped. Anything that is not hex is left as given, for the API
    server's validation to name the problem."""
    text = text.strip()
    text = text[len("serial="):] if text.lower().startswith("serial=") else text
    if not re.fullmatch(r"[0-9a-fA-F]{1,40}|[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){0,19}", text):
        return text
    digits = text.replace(":", "").upper().lstrip("0") or "0"
    return digits if len(digits) % 2 == 0 else "0" + digits


def revocation_name(spec: dict[str, Any], revision: int | None = None) -> str:
    """A deterministic, readable name: the same request gives the same name, so running the command
    again (a retry after a timeout) finds the revocation it made instead of making a second record.

    - `<certificate>-r<revision>-<reason>`: the revision the Certificate holds when the command runs
      (a later run, after the re-issue, names the new revision and so makes a new revocation);
    - `<certificate>-all-r<revision>-<reason>` with --all-valid;
    - `<certificate>-<reason>` when the Certificate has no revision yet (or cannot be read);
    - `<issuer>-<serial>-<reason>` for a serial number (all of it: a prefix could collide).

    Lower case (object names are); too long for 253 characters, the first part is cut and a hash
    of the whole keeps the name unique.
    """
    reason = str(spec["reason"]).lower()
    if "certificateName" in spec:
        head = str(spec["certificateName"])
        middle = ("all-" if spec.get("revisions") == "AllValid" else "") + (f"r{revision}" if revision else "")
    else:
        head = str(spec["issuerRef"]["name"])
        middle = str(spec["serialNumber"]).replace(":", "").lower()
    parts = [_name_part(p) for p in (head, middle.rstrip("-"), reason)]
    name = "-".join(p for p in parts if p)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    tail = "-".join(p for p in parts[1:] if p)
    room = MAX_NAME - len(tail) - len(digest) - 2
    return f"{parts[0][:room].rstrip('-.')}-{digest}-{tail}"


def _name_part(text: str) -> str:
    """text as a valid piece of an object name: lower case, anything else becomes '-'."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9.-]", "-", text.lower())).strip("-.")


def crl_places(kind: str, name: str, namespace: str | None) -> str:
    """Where an issuer's CRL is published: its ConfigMap and the HTTP path on the operator's
    metrics port. namespace: the Issuer's, or for a ClusterIssuer the one its ConfigMap was found
    in (None: not known, the operator's cluster resource namespace)."""
    from certmint.revocation.ledger import CRL_KEY, configmap_name, http_path
    from certmint.revocation.spec import IssuerKey

    configmap = configmap_name(name)
    where = f"{namespace}/{configmap}" if namespace else f"{configmap} (in the cluster resource namespace)"
    key = IssuerKey(kind, name, namespace if kind == "Issuer" else None)
    return f"ConfigMap {where}, key {CRL_KEY}; HTTP {http_path(key)} on the operator's metrics port"


# --- the command --------------------------------------------------------------------------------


def revoke(args: argparse.Namespace) -> int:
    operand = getattr(args, "operand", None)
    if operand is not None:
        if args.name is not None:
            raise UsageError(f"unexpected argument {args.name!r}: revoke takes one NAME")
        args.name = operand
    if args.name and (args.issuer or args.serial):
        raise UsageError("give NAME (a Certificate) or --issuer KIND/NAME with --serial HEX, not both")
    if not args.name and not (args.issuer or args.serial):
        raise UsageError("give NAME (a Certificate) or --issuer KIND/NAME with --serial HEX")
    if not args.name and not (args.issuer and args.serial):
        raise UsageError("--issuer and --serial go together: the issuer and the serial number it signed")
    if args.all_valid and not args.name:
        raise UsageError("--all-valid applies to NAME (a Certificate) only")
    cluster = connect(args)
    spec = revocation_spec(args.reason, args.name, args.all_valid, args.issuer, args.serial)
    certificate = _certificate(cluster, args.name) if args.name else None
    revision = int(((certificate or {}).get("status") or {}).get("revision") or 0) or None
    name = args.object_name or revocation_name(spec, revision)
    obj = revocation_object(name, cluster.namespace, spec)
    if args.dry_run == "client":
        _print_result(obj, args.output, f"{RESOURCE}/{name} created (dry run)")
        return 0
    created, verb = _create(cluster, obj, server_dry_run=args.dry_run == "server")
    if args.dry_run == "server" or not args.wait:
        _print_result(created, args.output, f"{RESOURCE}/{name} {verb}" +
                      (" (server dry run)" if args.dry_run == "server" else ""))
        if args.output == "text" and args.dry_run != "server":
            print(_pending_text(cluster, spec, certificate, name))
        return 0
    if args.output == "text":
        print(f"{RESOURCE}/{name} {verb}")
    final, code = _wait(cluster, name, args.timeout)
    if args.output != "text":
        print(dump(final, args.output), end="" if args.output == "yaml" else "\n")
    elif code == 0:
        print(revoked_text(final, cluster.namespace, lambda kind, issuer: _configmap_namespace(cluster, kind, issuer)))
    return code


def _print_result(obj: dict, output: str, line: str) -> None:
    if output == "text":
        print(line)
    else:
        print(dump(obj, output), end="" if output == "yaml" else "\n")


def _certificate(cluster: Cluster, name: str) -> dict | None:
    """The Certificate, for its revision and issuer; None when it does not exist or may not be read
    (a revoker needs no read access to Certificates: the operator reports what it finds)."""
    from certmint.kube.api import ApiError

    try:
        return cluster.api.get(cluster.path("certificates", name))
    except ApiError as e:
        if e.status in (401, 403, 404):
            return None
        raise api_error(e, f"certificate {name!r} in namespace {cluster.namespace!r}") from None


def _create(cluster: Cluster, obj: dict, server_dry_run: bool) -> tuple[dict, str]:
    """Create the object; when one of that name exists with the same spec (the command run again),
    it is the revocation asked for: use it."""
    from certmint.kube.api import ApiError

    name = obj["metadata"]["name"]
    query = [("fieldManager", FIELD_MANAGER)] + ([("dryRun", "All")] if server_dry_run else [])
    try:
        return cluster.api.request("create", "POST", cluster.path(PLURAL), body=obj, query=query), "created"
    except ApiError as e:
        if e.status != 409:
            raise api_error(e) from None
    try:
        existing = cluster.api.get(cluster.path(PLURAL, name))
    except ApiError as e:
        raise api_error(e, f"{RESOURCE}/{name}") from None
    if existing.get("spec") != obj["spec"]:
        raise CliError(f"{RESOURCE}/{name} already exists in namespace {cluster.namespace} with another spec "
                       f"({_target_text(existing.get('spec') or {})}); give --name to create another")
    return existing, "unchanged (it already exists)"


def _wait(cluster: Cluster, name: str, timeout: Any) -> tuple[dict, int]:
    """Poll the revocation until Revoked is True (0), or False for a reason other than Pending (1),
    or the timeout passes (1). Failures are printed as one line on stderr."""
    from certmint.kube.api import ApiError

    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        try:
            obj = cluster.api.get(cluster.path(PLURAL, name))
        except ApiError as e:
            raise api_error(e, f"{RESOURCE}/{name}") from None
        revoked = condition(obj, "Revoked")
        if revoked.get("status") == "True":
            return obj, 0
        if revoked.get("status") == "False" and revoked.get("reason") != PENDING:
            print(f"error: {RESOURCE}/{name} is not in effect: {revoked.get('reason')}: {revoked.get('message')} "
                  "(the revocation stays and takes effect once this is resolved, or delete it)", file=sys.stderr)
            return obj, FAILED
        if time.monotonic() > deadline:
            last = f"{revoked.get('reason')}: {revoked.get('message')}" if revoked \
                else "no status yet: is the operator running?"
            print(f"error: timed out after {human_delta(timeout)} waiting for {RESOURCE}/{name} to be revoked "
                  f"({last})", file=sys.stderr)
            return obj, FAILED
        time.sleep(0.5)


def _target_text(spec: dict) -> str:
    if spec.get("certificateName"):
        which = "every valid certificate" if spec.get("revisions") == "AllValid" else "the current certificate"
        return f"{which} of Certificate {spec['certificateName']}, reason {spec.get('reason')}"
    ref = spec.get("issuerRef") or {}
    return f"serial {spec.get('serialNumber')} of {ref.get('kind') or 'Issuer'} {ref.get('name')}, " \
           f"reason {spec.get('reason')}"


def _pending_text(cluster: Cluster, spec: dict, certificate: dict | None, name: str) -> str:
    """Without --wait: what was asked, where its CRL will be, and how to follow it."""
    lines = [f"Revokes:  {_target_text(spec)}"]
    if certificate is not None:
        ref = (certificate.get("spec") or {}).get("issuerRef") or {}
        kind, issuer = ref.get("kind") or "Issuer", ref.get("name")
    else:
        kind, issuer = (spec.get("issuerRef") or {}).get("kind") or "Issuer", (spec.get("issuerRef") or {}).get("name")
    if issuer and kind in ISSUER_KINDS:
        lines.append(f"CRL:      {crl_places(kind, issuer, _configmap_namespace(cluster, kind, issuer))}")
    lines.append(f"Follow:   kubectl wait -n {cluster.namespace} --for=condition=Revoked {PLURAL}/{name}")
    return "\n".join(lines)


def revoked_text(obj: dict, namespace: str, configmap_namespace: Any = None) -> str:
    """What a revocation in effect covers, and where each of its issuers publishes the CRL."""
    st, spec = obj.get("status") or {}, obj.get("spec") or {}
    lines = [f"Revoked:  {_target_text(spec)}, at {st.get('revokedAt', '')}"]
    issuers: dict[tuple[str, str], None] = {}
    for s in st.get("serials") or []:
        ref = s.get("issuerRef") or {}
        kind, issuer = ref.get("kind") or "Issuer", str(ref.get("name") or "")
        issuers[(kind, issuer)] = None
        details = [f"revision {s['revision']}" if s.get("revision") else "",
                   f"not after {s['notAfter']}" if s.get("notAfter") else "",
                   f"{kind} {namespace + '/' if kind == 'Issuer' else ''}{issuer}"]
        lines.append(f"  serial {s.get('serialNumber')}  " + ", ".join(d for d in details if d))
    for kind, issuer in issuers:
        where = configmap_namespace(kind, issuer) if configmap_namespace else (namespace if kind == "Issuer" else None)
        number = f" (CRL number {st['crlNumber']} and later)" if st.get("crlNumber") else ""
        lines.append(f"CRL{number}: {crl_places(kind, issuer, where)}")
    return "\n".join(lines)


def _configmap_namespace(cluster: Cluster, kind: str, issuer: str) -> str | None:
    """The namespace of an issuer's CRL ConfigMap: the Issuer's own; for a ClusterIssuer, the
    cluster resource namespace, which only the operator knows: found by the ConfigMap's labels and
    annotations when the user may list ConfigMaps cluster-wide, else None."""
    if kind == "Issuer":
        return cluster.namespace
    from certmint.kube.api import ApiError
    from certmint.kube.resources import core_path
    from certmint.revocation.ledger import CRL_LABEL, ISSUER_KIND_ANNOTATION, configmap_name

    try:
        found = cluster.api.request("list", "GET", core_path("configmaps"),
                                    query=[("labelSelector", CRL_LABEL),
                                           ("fieldSelector", f"metadata.name={configmap_name(issuer)}")])
    except ApiError:
        return None
    for item in found.get("items") or []:
        annotations = (item.get("metadata") or {}).get("annotations") or {}
        if annotations.get(ISSUER_KIND_ANNOTATION) == "ClusterIssuer":
            return str(item["metadata"]["namespace"])
    return None
