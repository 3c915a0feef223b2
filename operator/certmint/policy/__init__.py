"""The pure decision: "up to date until T" or "issue now, because REASON".

decide() reads only its Observed input and never does I/O, so every branch is
unit-tested without a cluster.
"""
from __future__ import annotations

import datetime as dt
import dataclasses
from dataclasses import dataclass

from certmint.model.certificate import renewal_time
from certmint.policy.checks import TRIGGERS, Contents, first_trigger, parse_contents
from certmint.policy.types import (
    CERTIFICATE_NAME,
    ISSUER_CHANGED,
    REVISION,
    Decision,
    FailureRecord,
    Issue,
    IssuerState,
    Observed,
    SecretState,
    UpToDate,
    Wait,
)

__all__ = [
    "Backoff", "Decision", "FailureRecord", "Issue", "IssuerState", "Observed", "SecretState",
    "TRIGGERS", "UpToDate", "Wait", "certificate_times", "decide", "secret_revision",
]


@dataclass(frozen=True)
class Backoff:
    """Retry delay after failed issuances: initial, doubling per attempt, capped at maximum."""

    initial: dt.timedelta = dt.timedelta(seconds=10)
    maximum: dt.timedelta = dt.timedelta(hours=1)

    def delay(self, attempts: int) -> dt.timedelta:
        if attempts <= 0:
            return dt.timedelta(0)
        return min(self.maximum, self.initial * (1 << min(attempts - 1, 32)))

    def retry_at(self, failure: FailureRecord) -> dt.datetime | None:
        if failure.attempts <= 0 or failure.last_failure is None:
            return None
        return failure.last_failure + self.delay(failure.attempts)


def certificate_times(obs: Observed) -> tuple[dt.datetime, dt.datetime, dt.datetime] | None:
    """notBefore, notAfter and renewal time of the certificate in the Secret, if it holds a usable one."""
    parsed = parse_contents(obs)
    if isinstance(parsed, Issue):
        return None
    nb, na = parsed.issued.not_before, parsed.issued.not_after
    return nb, na, renewal_time(nb, na, obs.spec)


def secret_revision(secret: SecretState | None) -> int | None:
    try:
        return int(secret.annotations[REVISION]) if secret else None
    except (KeyError, ValueError):
        return None


def decide(obs: Observed, backoff: Backoff = Backoff()) -> Decision:
    owner = obs.secret.labels.get(CERTIFICATE_NAME) if obs.secret else None
    if obs.secret is not None and owner != obs.name:
        return Wait("SecretMismatch", f"Secret {obs.spec.secret_name} belongs to Certificate {owner}, "
                    "not to this one: choose another secretName",
                    backoff.retry_at(obs.failure) or obs.now + backoff.initial)
    parsed = parse_contents(obs)
    if isinstance(parsed, Issue):
        trigger = parsed
    else:
        first = first_trigger(obs, parsed)
        if first is None:
            return _up_to_date(obs, parsed)
        rotation_at = obs.rotation_at() if first.reason == ISSUER_CHANGED else None
        if rotation_at is not None and obs.now < rotation_at:
            # Still valid, and its peers do not all trust the new root yet: renewed at its turn, or at
            # its ordinary renewal time if that comes first (a certificate is never let expire for it).
            up_to_date = _up_to_date(obs, parsed)
            if obs.now < up_to_date.renewal_time:
                return dataclasses.replace(up_to_date, renewal_time=min(up_to_date.renewal_time, rotation_at))
        trigger = first
    if not obs.issuer.ready:
        return Wait("IssuerNotReady", f"Issuer is not ready: {obs.issuer.message}")
    retry_at = _backoff_until(obs, backoff)
    if retry_at is not None and obs.now < retry_at:
        return Wait("Backoff", f"{trigger.message}; retrying after {obs.failure.attempts} failed "
                    f"attempt(s) at {retry_at.isoformat()}", retry_at)
    return trigger


def _up_to_date(obs: Observed, c: Contents) -> UpToDate:
    return UpToDate(c.issued.not_before, c.issued.not_after,
                    renewal_time(c.issued.not_before, c.issued.not_after, obs.spec),
                    secret_revision(obs.secret), c.issued)


def _backoff_until(obs: Observed, backoff: Backoff) -> dt.datetime | None:
    """When the next attempt may run; None once the backoff was reset by a spec change or the issuer recovering."""
    failure = obs.failure
    if failure.attempts <= 0 or failure.last_failure is None:
        return None
    if failure.generation is not None and failure.generation != obs.generation:
        return None
    if obs.issuer.ready_since is not None and obs.issuer.ready_since > failure.last_failure:
        return None
    return backoff.retry_at(failure)
