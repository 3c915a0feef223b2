"""Reconcile an Issuer or ClusterIssuer: can it sign? Report it, and wake its certificates when that changes."""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from certmint.controller import status as st
from certmint.issuers import issuer_state, valid_until
from certmint.kube.api import ApiError
from certmint.kube.resources import patch_status
from certmint.model import SpecError, parse_issuer_spec
from certmint.policy import IssuerState

if TYPE_CHECKING:
    from certmint.controller.core import Controller, ObjectKey

log = logging.getLogger(__name__)


def secret_namespace(controller: "Controller", key: "ObjectKey") -> str:
    kind, namespace, _ = key
    return namespace if kind == "Issuer" else controller.options.cluster_resource_namespace


def compute_state(controller: "Controller", key: "ObjectKey", obj: dict, now: dt.datetime) -> IssuerState:
    try:
        spec = parse_issuer_spec(obj.get("spec") or {})
    except SpecError as e:
        return IssuerState(False, "InvalidSpec", str(e))
    secret = None
    if spec.ca_secret_name:
        namespace = secret_namespace(controller, key)
        secret = controller.secrets.get(namespace, spec.ca_secret_name)
        if secret is None:
            try:
                secret = controller.secrets.read(namespace, spec.ca_secret_name)
            except ApiError as e:
                return IssuerState(False, "ErrGetKeyPair", f"cannot read CA Secret: {e.message}")
    state = issuer_state(spec, secret, now, secret_namespace(controller, key) if spec.ca_secret_name else None)
    ready = st.find_condition(obj.get("status") or {}, st.READY) or {}
    if state.ready:
        since = st.parse_time(ready.get("lastTransitionTime")) if ready.get("status") == "True" else now
        state = IssuerState(state.ready, state.reason, state.message, state.signer, since or now)
    return state


def reconcile_issuer(controller: "Controller", key: "ObjectKey") -> None:
    kind, namespace, name = key
    obj = controller.issuers.get(key)
    if obj is None:
        controller.issuer_states.pop(key, None)
        controller.metrics.forget_issuer(kind, namespace, name)
        controller.wake_certificates_of(key)
        return
    now = controller.now()
    state = compute_state(controller, key, obj, now)
    previous = controller.issuer_states.get(key)
    controller.issuer_states[key] = state

    current = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    wanted = st.issuer_status(current, generation, now, state.ready, state.reason, state.message)
    if wanted != current:
        updated = patch_status(controller.api, kind, namespace or None, name, wanted)
        controller.issuers[key] = updated
        old = st.find_condition(current, st.READY) or {}
        if old.get("reason") != state.reason:
            controller.events.record(updated, "Normal" if state.ready else "Warning", state.reason, state.message)
    ca_until = valid_until(state)
    controller.metrics.set_issuer(kind, namespace, name, "True" if state.ready else "False", ca_until)

    if previous is None or _signing_changed(previous, state):
        controller.wake_certificates_of(key)
    _schedule_recheck(controller, key, state, now)


def _signing_changed(old: IssuerState, new: IssuerState) -> bool:
    if old.ready != new.ready:
        return True
    a = old.signer.certificate if old.signer else None
    b = new.signer.certificate if new.signer else None
    return a != b


def _schedule_recheck(controller: "Controller", key: "ObjectKey", state: IssuerState, now: dt.datetime) -> None:
    """CA issuers: re-check when the CA expires, and periodically if its Secret is not one we watch."""
    obj = controller.issuers.get(key) or {}
    ca = (obj.get("spec") or {}).get("ca") or {}
    if not ca:
        return
    times = []
    until = valid_until(state)
    if until:
        times.append(until)
    watched = controller.secrets.get(secret_namespace(controller, key), ca.get("secretName", "")) is not None
    if not watched:
        times.append(now + controller.options.issuer_recheck)
    if times:
        controller.queue.add_at(key, min(times).timestamp())
