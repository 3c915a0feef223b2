"""Reconcile an Issuer or ClusterIssuer: can it sign? Report it, and wake its certificates when that changes."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from certmint.controller import status as st
from certmint.controller.context import Context, ObjectKey, Result, issuer_key
from certmint.controller.revocations import publish_crl, revocations_waiting, with_crl_status
from certmint.issuers import issuer_state, valid_until
from certmint.kube.api import ApiError
from certmint.model import IssuerRef, SpecError, parse_issuer_spec
from certmint.model.issuer import STEP, IssuerSpec
from certmint.policy import IssuerState, SecretState

log = logging.getLogger(__name__)

STEP_RETRY = dt.timedelta(seconds=10)  # how soon a step issuer whose CA failed is checked again


def secret_namespace(ctx: Context, key: ObjectKey) -> str:
    kind, namespace, _ = key
    return namespace if kind == "Issuer" else ctx.options.cluster_resource_namespace


def compute_state(ctx: Context, key: ObjectKey, obj: dict, now: dt.datetime) -> IssuerState:
    try:
        spec = parse_issuer_spec(obj.get("spec") or {})
    except SpecError as e:
        return IssuerState(False, "InvalidSpec", str(e))
    if spec.kind == STEP:
        state = _step_state(ctx, key, spec)
    else:
        secret = None
        if spec.ca_secret_name:
            try:
                secret = _read_secret(ctx, secret_namespace(ctx, key), spec.ca_secret_name)
            except ApiError as e:
                if e.transient:
                    raise  # the API server is down or busy: retried in moments
                return IssuerState(False, "ErrGetKeyPair", f"cannot read CA Secret: {e.message}")
        state = issuer_state(spec, secret, now, secret_namespace(ctx, key) if spec.ca_secret_name else None)
    ready = st.find_condition(obj.get("status") or {}, st.READY) or {}
    if state.ready:
        # Whole seconds, as the status records it (and lastFailureTime too): a failure in the same
        # second as the issuer became Ready must not count as before it, or the back-off is reset
        # and the certificate retried at once.
        since = st.parse_time(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None
        state = dataclasses.replace(state, ready_since=since or now.replace(microsecond=0))
    return state


def _read_secret(ctx: Context, namespace: str, name: str) -> SecretState | None:
    """A Secret an issuer needs: from the store when it is one of ours, else read directly."""
    return ctx.secrets.get(namespace, name) or ctx.secrets.read(namespace, name)


def _step_state(ctx: Context, key: ObjectKey, spec: IssuerSpec) -> IssuerState:
    """A step issuer is Ready when its CA answers and the provisioner key decrypts with the password."""
    assert spec.step is not None
    namespace = secret_namespace(ctx, key)
    try:
        password = _read_secret(ctx, namespace, spec.step.password_secret_name)
    except ApiError as e:
        if e.transient:
            raise
        return IssuerState(False, "ErrGetPassword", f"cannot read the provisioner password Secret: {e.message}",
                           external=True)
    return dataclasses.replace(ctx.step.check(key, spec.step, password, namespace), external=True)


def issuer_state_for(ctx: Context, namespace: str, ref: IssuerRef) -> IssuerState:
    """The state of the issuer a Certificate in namespace references, as last reconciled (or computed
    now, if its reconcile has not run yet)."""
    key = issuer_key(ref.kind, namespace, ref.name)
    state = ctx.issuer_states.get(key)
    if state is not None:
        return state
    obj = ctx.objects.get(key)
    if obj is None:
        where = f"{ref.kind} {ref.name}" + (f" in namespace {namespace}" if ref.kind == "Issuer" else "")
        return IssuerState(False, "NotFound", f"{where} does not exist")
    # Kept, so the other Certificates of this issuer reconciled before it do not check it again
    # (for a step issuer, each check asks its CA); its own reconcile replaces it.
    return ctx.issuer_states.setdefault(key, compute_state(ctx, key, obj, ctx.now()))


def reconcile_issuer(ctx: Context, key: ObjectKey) -> Result:
    kind, namespace, name = key
    obj = ctx.objects.get(key)
    if obj is None:
        ctx.issuer_states.pop(key)
        ctx.step.forget(key)
        ctx.metrics.forget_issuer(kind, namespace, name)
        ctx.metrics.forget_crl(name, kind, namespace)
        return Result(wake=ctx.certificates_of(key), forget=True)
    now = ctx.now()
    state = compute_state(ctx, key, obj, now)
    previous = ctx.issuer_states.put(key, state)
    try:
        crl = publish_crl(ctx, key, obj, parse_issuer_spec(obj.get("spec") or {}), state, now)
    except SpecError:
        crl = None

    current = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    wanted = st.issuer_status(current, generation, now, state.ready, state.reason, state.message)
    wanted = with_crl_status(wanted, crl, generation, now)
    if wanted != current:
        updated = ctx.write_status(kind, namespace, name, wanted)
        old = st.find_condition(current, st.READY) or {}
        if old.get("reason") != state.reason:
            ctx.events.record(updated, "Normal" if state.ready else "Warning", state.reason, state.message)
    ctx.metrics.set_issuer(kind, namespace, name, "True" if state.ready else "False", valid_until(state))

    wake = ctx.certificates_of(key) if previous is None or _signing_changed(previous, state) else ()
    if crl is not None and crl.publication is not None:
        wake += revocations_waiting(ctx)  # they see whether the new CRL lists them
    recheck = [t for t in (_recheck_at(ctx, key, obj, state, now), crl.recheck_at if crl else None) if t]
    return Result(requeue_at=min(recheck) if recheck else None, wake=wake)


def _signing_changed(old: IssuerState, new: IssuerState) -> bool:
    if old.ready != new.ready:
        return True
    a = old.signer.certificate if old.signer else None
    b = new.signer.certificate if new.signer else None
    return a != b


def _recheck_at(ctx: Context, key: ObjectKey, obj: dict, state: IssuerState, now: dt.datetime) -> dt.datetime | None:
    """CA issuers: re-check when the CA expires, and periodically if its Secret is not one we watch.
    Step issuers: periodically, and soon while the CA cannot be used, so they recover by themselves."""
    if (obj.get("spec") or {}).get("step"):
        return now + (ctx.options.issuer_recheck if state.ready else STEP_RETRY)
    ca = (obj.get("spec") or {}).get("ca") or {}
    if not ca:
        return None
    times = []
    until = valid_until(state)
    if until:
        times.append(until)
    watched = ctx.secrets.get(secret_namespace(ctx, key), ca.get("secretName", "")) is not None
    if not watched:
        times.append(now + ctx.options.issuer_recheck)
    return min(times) if times else None
