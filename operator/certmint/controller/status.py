"""Status and conditions, computed (not patched) here: the reconcilers write only what differs."""
from __future__ import annotations

import datetime as dt

from certmint.policy import FailureRecord

READY = "Ready"
ISSUING = "Issuing"
READY_MESSAGE = "Certificate is up to date and has not expired"


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def find_condition(status: dict, kind: str) -> dict | None:
    for c in status.get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


def with_condition(status: dict, kind: str, value: str, reason: str, message: str, generation: int,
                   now: dt.datetime) -> dict:
    """A copy of status with one condition set; lastTransitionTime moves only when the value flips."""
    old = find_condition(status, kind)
    since = old["lastTransitionTime"] if old and old.get("status") == value and old.get("lastTransitionTime") \
        else rfc3339(now)
    condition = {"type": kind, "status": value, "reason": reason, "message": message,
                 "lastTransitionTime": since, "observedGeneration": generation}
    others = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    return {**status, "conditions": sorted(others + [condition], key=lambda c: c["type"] != READY)}


def failure_record(status: dict) -> FailureRecord:
    ready = find_condition(status, READY) or {}
    return FailureRecord(int(status.get("failedIssuanceAttempts") or 0), parse_time(status.get("lastFailureTime")),
                         ready.get("observedGeneration"))


def ready_status(status: dict, generation: int, now: dt.datetime, not_before: dt.datetime,
                 not_after: dt.datetime, renewal: dt.datetime, revision: int | None) -> dict:
    """The status of a certificate whose Secret is up to date."""
    out = with_condition(status, READY, "True", "Ready", READY_MESSAGE, generation, now)
    out.update(notBefore=rfc3339(not_before), notAfter=rfc3339(not_after), renewalTime=rfc3339(renewal))
    if revision is not None:
        out["revision"] = revision
    out.pop("failedIssuanceAttempts", None)
    issuing = find_condition(out, ISSUING)
    if issuing and issuing.get("status") == "True":  # an issuance was interrupted, and has since completed
        out = with_condition(out, ISSUING, "False", "Issued", "The certificate has been successfully issued",
                             generation, now)
    return out


def issued_status(status: dict, generation: int, now: dt.datetime, not_before: dt.datetime,
                  not_after: dt.datetime, renewal: dt.datetime, revision: int, trigger: str) -> dict:
    """After an issuance. The Issuing condition keeps the trigger's reason in its message: issuing
    and reporting take one status write, so there is no separate Issuing=True moment to carry it."""
    out = ready_status(status, generation, now, not_before, not_after, renewal, revision)
    return with_condition(out, ISSUING, "False", "Issued",
                          f"The certificate has been successfully issued (revision {revision}, trigger {trigger})",
                          generation, now)


def with_times(status: dict, times: tuple[dt.datetime, dt.datetime, dt.datetime] | None) -> dict:
    """Report the current certificate's validity even while it cannot be renewed."""
    if times is None:
        return status
    not_before, not_after, renewal = times
    return {**status, "notBefore": rfc3339(not_before), "notAfter": rfc3339(not_after),
            "renewalTime": rfc3339(renewal)}


def failed_status(status: dict, generation: int, now: dt.datetime, reason: str, message: str) -> dict:
    out = with_condition(status, READY, "False", reason, message, generation, now)
    out = with_condition(out, ISSUING, "False", "Failed", message, generation, now)
    out["failedIssuanceAttempts"] = int(status.get("failedIssuanceAttempts") or 0) + 1
    out["lastFailureTime"] = rfc3339(now)
    return out


def not_ready_status(status: dict, generation: int, now: dt.datetime, reason: str, message: str) -> dict:
    return with_condition(status, READY, "False", reason, message, generation, now)


def issuer_status(status: dict, generation: int, now: dt.datetime, ready: bool, reason: str, message: str) -> dict:
    return with_condition(status, READY, "True" if ready else "False", reason, message, generation, now)
