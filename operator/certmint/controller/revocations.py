"""Revocation in the controller: reconcile a CertificateRevocation, and publish an issuer's CRL.

The decisions are certmint.revocation's (pure); this module reads their inputs from the
store, makes the writes they call for and reports. The published CRL ConfigMap is the
durable ledger (docs/revocation.md): a revocation pins what it covers in its own status,
the issuer's CRL is rebuilt from all pinned revocations, and the ConfigMap is written
before the issuer's status, so a CRL number never goes back.
"""
from __future__ import annotations

import datetime as dt
import logging

from certmint.controller import status as st
from certmint.controller.context import (
    CONFIGMAP,
    ISSUER_KINDS,
    REVOCATION,
    Context,
    ObjectKey,
    Result,
    from_issuer_key,
    slim,
    to_issuer_key,
)
from certmint.kube.api import resource_version
from certmint.kube.resources import core_path
from certmint.model import SpecError, parse_issuer_spec
from certmint.model.issuer import IssuerSpec
from certmint.policy import IssuerState
from certmint.revocation import (
    COALESCE_DELAY,
    CRLOutcome,
    Ledger,
    configmap_name,
    configmap_namespace,
    issuer_crl,
    issuer_of_http_path,
    reconcile_crl,
    reconcile_revocation,
    served_crl,
)
from certmint.revocation.coverage import Problem
from certmint.revocation.spec import IssuerKey
from certmint.revocation.status import CRL_PUBLISHED, REVOKED, IssuerCRL, crl_condition_problem

log = logging.getLogger(__name__)


def reconcile_certificate_revocation(ctx: Context, key: ObjectKey) -> Result:
    obj = ctx.objects.get(key)
    if obj is None:
        # Deleting a revocation un-revokes nothing but a certificateHold: the CRLs say which.
        return Result(wake=crl_issuers(ctx), forget=True)
    _, namespace, name = key
    certificate_name = (obj.get("spec") or {}).get("certificateName")
    certificate = ctx.objects.get(("Certificate", namespace, certificate_name)) if certificate_name else None
    now = ctx.now()
    outcome = reconcile_revocation(obj, certificate, lambda issuer: _issuer_crl(ctx, issuer), now)
    stored = obj.get("status") or {}
    if outcome.status != stored:
        updated = ctx.write_status(REVOCATION, namespace, name, outcome.status)
        was = (st.find_condition(stored, REVOKED) or {}).get("status")
        condition = st.find_condition(outcome.status, REVOKED) or {}
        if condition.get("status") == "True" and was != "True":
            ctx.events.record(updated, "Normal", REVOKED, condition.get("message", "revoked"))
        elif condition.get("status") == "False" and condition.get("reason") != \
                (st.find_condition(stored, REVOKED) or {}).get("reason"):
            ctx.events.record(updated, "Warning", condition.get("reason", "NotRevoked"), condition.get("message", ""))
    # The Certificate re-issues once the coverage is pinned (its Revoked trigger); the issuers'
    # CRLs are rebuilt a moment later, so revocations applied together share one CRL.
    wake = (("Certificate", namespace, certificate_name),) if certificate_name and outcome.revocation else ()
    later = tuple((from_issuer_key(issuer), now + COALESCE_DELAY) for issuer in sorted(outcome.issuers))
    return Result(wake=wake, later=later)


def crl_issuers(ctx: Context) -> tuple[ObjectKey, ...]:
    """The issuers that publish a CRL."""
    return tuple(k for kind in ISSUER_KINDS for k, obj in ctx.of_kind(kind)
                 if ((obj.get("spec") or {}).get("ca") or {}).get("crl"))


def _issuer_crl(ctx: Context, issuer: IssuerKey) -> IssuerCRL | None:
    obj = ctx.objects.get(from_issuer_key(issuer))
    if obj is None:
        return None
    try:
        spec = parse_issuer_spec(obj.get("spec") or {})
    except SpecError:
        return None
    if spec.crl_validity is None:
        return issuer_crl(spec, None)
    return issuer_crl(spec, _ledger(ctx, issuer, obj), crl_condition_problem(obj.get("status")))


def _configmap_key(ctx: Context, issuer: IssuerKey) -> ObjectKey:
    return (CONFIGMAP, configmap_namespace(issuer, ctx.options.cluster_resource_namespace), configmap_name(issuer.name))


def _status_number(issuer_obj: dict) -> int | None:
    number = ((issuer_obj.get("status") or {}).get("crl") or {}).get("number")
    return number if isinstance(number, int) else None


def _ledger(ctx: Context, issuer: IssuerKey, issuer_obj: dict) -> Ledger:
    key = _configmap_key(ctx, issuer)
    configmap = ctx.objects.get(key)
    version = resource_version(configmap) if configmap else 0
    return ctx.revocations.ledger(key, version, _status_number(issuer_obj), configmap)


def publish_crl(ctx: Context, key: ObjectKey, obj: dict, spec: IssuerSpec, state: IssuerState,
                now: dt.datetime) -> CRLOutcome | None:
    """The CRL step of an issuer's reconcile: sign and publish its CRL when its entries changed or it
    nears nextUpdate. Writes the ConfigMap (the ledger) first; the caller then patches the issuer's
    status with crl_status(), in the one status write it makes anyway."""
    if spec.crl_validity is None:
        ctx.metrics.forget_crl(*_labels(key))
        ctx.revocations.serve(to_issuer_key(key), None)
        return None
    issuer = to_issuer_key(key)
    configmap = ctx.objects.get(_configmap_key(ctx, issuer))
    problem = None if state.ready else Problem(state.reason, state.message)
    outcome = reconcile_crl(issuer, spec, state.signer, problem, configmap, obj.get("status"),
                            ctx.revocations.revocations(ctx.objects),
                            configmap_namespace(issuer, ctx.options.cluster_resource_namespace), now)
    if outcome.publication is not None:
        manifest = outcome.publication.configmap
        meta = manifest["metadata"]
        written = ctx.api.apply(core_path("configmaps", meta["namespace"], meta["name"]), manifest)
        remember_configmap(ctx, written)
        ctx.revocations.serve(issuer, outcome.publication.der)
        log.info("published the CRL of %s: %d entries (%s)", issuer, len(outcome.publication.entries),
                 outcome.reason)
    if outcome.revoked is not None and outcome.next_update is not None:
        ctx.metrics.set_crl(*_labels(key), outcome.revoked, outcome.next_update)
    return outcome


def with_crl_status(status: dict, outcome: CRLOutcome | None, generation: int, now: dt.datetime) -> dict:
    """The issuer's status with what its CRL step decided: status.crl and the CRLPublished condition."""
    if outcome is None:
        return status
    out = dict(status)
    if outcome.publication is not None:
        out["crl"] = outcome.publication.status
    if outcome.condition is not None:
        value, reason, message = outcome.condition
        out = st.with_condition(out, CRL_PUBLISHED, value, reason, message, generation, now)
    return out


def revocations_waiting(ctx: Context) -> tuple[ObjectKey, ...]:
    """Revocations not yet Revoked: after a CRL is published, they see whether it lists them."""
    return tuple(k for k, obj in ctx.of_kind(REVOCATION)
                 if (st.find_condition(obj.get("status") or {}, REVOKED) or {}).get("status") != "True")


def remember_configmap(ctx: Context, obj: dict) -> bool:
    """Store a CRL ConfigMap (a watch event or our own write's answer); True if it changed."""
    slimmed = slim({**obj, "kind": CONFIGMAP})
    meta = slimmed["metadata"]
    key = (CONFIGMAP, meta.get("namespace", ""), meta.get("name", ""))
    return ctx.objects.upsert(key, resource_version(slimmed), slimmed) is not None


def served(ctx: Context, path: str) -> bytes | None:
    """The DER CRL for an HTTP path (/crls/<namespace>/<name>.crl or /crls/<name>.crl)."""
    issuer = issuer_of_http_path(path)
    if issuer is None:
        return None
    return ctx.revocations.served(issuer) or served_crl(ctx.objects.get(_configmap_key(ctx, issuer)))


def _labels(key: ObjectKey) -> tuple[str, str, str]:
    kind, namespace, name = key
    return name, kind, namespace
