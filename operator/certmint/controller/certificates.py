"""Reconcile one Certificate: read state, decide, issue, write the Secret, report. Thin by design."""
from __future__ import annotations

import datetime as dt
import logging
import time

from cryptography import x509

from certmint.controller import status as st
from certmint.controller.context import CERTIFICATE, Context, ObjectKey, Result, issuer_key
from certmint.controller.bundles import rotation_gate
from certmint.controller.issuers import issuer_state_for
from certmint.issuance import IssuanceError, issue_certificate, issued_secret, maintained_secret, secret_differs
from certmint.kube.api import ApiError
from certmint.model import CertificateSpec, SpecError, parse_certificate_spec, renewal_time
from certmint.policy import (
    Issue,
    IssuerState,
    Observed,
    UpToDate,
    Wait,
    certificate_times,
    decide,
    secret_revision,
)
from certmint.pki import PKIError, parse_certificates
from certmint.policy.checks import REVOKED
from certmint.policy.types import CERTIFICATE_NAME, RENEW, TLS_CERT, SecretState
from certmint.revocation import HISTORY_FIELD, IssuanceRecord, history_status, parse_history, record_issuance
from certmint.revocation.spec import IssuerKey

log = logging.getLogger(__name__)


class Reconcile:
    """One pass over one Certificate. Writes: at most one Secret apply and one status patch.
    Each outcome sets requeue_at: when this certificate needs looking at again."""

    def __init__(self, ctx: Context, key: ObjectKey, obj: dict):
        self.c = ctx
        self.key = key
        self.requeue_at: dt.datetime | None = None
        self.obj = obj
        _, self.namespace, self.name = key
        meta = obj.get("metadata", {})
        self.generation = meta.get("generation", 0)
        self.annotations = meta.get("annotations") or {}
        self.status = obj.get("status") or {}
        self.now = ctx.now()
        self.spec: CertificateSpec | None = None  # set once the spec parses
        self.observed: Observed | None = None

    def run(self) -> Result:
        try:
            spec = parse_certificate_spec(self.obj.get("spec") or {})
        except SpecError as e:
            self.report_not_ready("InvalidSpec", str(e))
            return Result()
        self.spec = spec
        issuer = issuer_state_for(self.c, self.namespace, spec.issuer_ref)
        secret = self.c.secrets.get(self.namespace, spec.secret_name)
        ref = spec.issuer_ref
        observed = Observed(self.name, self.generation, spec, secret, issuer, self.now,
                            self.annotations.get(RENEW), st.failure_record(self.status),
                            lambda: rotation_gate(self.c, self.key, issuer, issuer_key(ref.kind, self.namespace, ref.name)),
                            self.c.revocations.revoked_by(self.c.objects, self.issued_by()))
        self.observed = observed
        decision = decide(observed, self.c.backoff)
        try:
            if isinstance(decision, UpToDate):
                assert secret is not None, "up to date means the Secret exists"
                self.keep(decision, secret)
            elif isinstance(decision, Issue):
                self.issue(decision, issuer, secret)
            else:
                self.wait(decision)
        except IssuanceError as e:
            self.fail(e.reason, e.message)
        return Result(requeue_at=self.requeue_at)

    @property
    def parsed(self) -> CertificateSpec:
        """The spec, for the outcomes that only run once it parsed."""
        assert self.spec is not None, "the spec has not been parsed"
        return self.spec

    # --- outcomes ------------------------------------------------------------------------

    def keep(self, d: UpToDate, secret: SecretState) -> None:
        wanted = maintained_secret(secret, self.name, self.parsed, self.pkcs12_password(), d.issued)
        if secret_differs(secret, wanted):
            self.c.secrets.apply(self.namespace, wanted)
        status = st.ready_status(self.status, self.generation, self.now, d.not_before, d.not_after,
                                 d.renewal_time, d.revision or self.status.get("revision"))
        if HISTORY_FIELD not in status:  # issued before the history was kept: start it from the Secret
            status = self.with_history(status, secret.data.get(TLS_CERT), status.get("revision"))
        self.write_status(status)
        self.c.metrics.set_certificate(self.namespace, self.name, self.issuer_labels(), "True",
                                       d.not_before, d.not_after, d.renewal_time)
        self.requeue_at = d.renewal_time

    def issue(self, trigger: Issue, issuer: IssuerState, secret: SecretState | None) -> None:
        self.c.events.record(self.obj, "Normal", "Issuing", trigger.message, action=trigger.reason)
        started = time.monotonic()
        try:
            if issuer.external:
                ref = self.parsed.issuer_ref
                issued = self.c.step.issue(issuer_key(ref.kind, self.namespace, ref.name), self.parsed,
                                           None if trigger.reason == REVOKED else secret, self.now,
                                           new_key=self.c.keys.new_key)
            else:
                # A revoked certificate's key may be compromised: never reuse it, whatever the rotationPolicy.
                previous = None if trigger.reason == REVOKED else secret
                issued = issue_certificate(self.parsed, issuer, previous, self.now, self.c.keys.new_key)
            revision = max(int(self.status.get("revision") or 0), secret_revision(secret) or 0) + 1
            new = issued_secret(self.parsed.secret_name, self.name, self.parsed, issued, revision,
                                self.annotations.get(RENEW), self.pkcs12_password())
            self.write_secret(new, ours=secret is not None)
        except ApiError as e:
            if e.transient:
                raise  # the API server is down or busy: retried in moments, not after the issuance back-off
            self.fail("SecretWriteFailed", f"cannot write Secret {self.parsed.secret_name}: {e.message}")
            return
        self.c.metrics.issuance_seconds.labels(self.parsed.template.key.algorithm).observe(time.monotonic() - started)
        self.c.metrics.issuances.labels(trigger.reason).inc()
        not_before = issued.certificate.not_valid_before_utc
        not_after = issued.certificate.not_valid_after_utc
        renewal = renewal_time(not_before, not_after, self.parsed)
        status = st.issued_status(self.status, self.generation, self.now, not_before, not_after,
                                  renewal, revision, trigger.reason)
        self.write_status(self.with_history(status, issued.certificate, revision))
        message = f"The certificate has been successfully issued (revision {revision}, serial " \
                  f"{issued.certificate.serial_number:x})"
        if issued.clamped:
            message += f"; notAfter was limited to the issuer's notAfter {st.rfc3339(not_after)}"
        self.c.events.record(self.obj, "Normal", "Issued", message)
        self.c.metrics.set_certificate(self.namespace, self.name, self.issuer_labels(), "True",
                                       not_before, not_after, renewal)
        self.requeue_at = renewal

    def issued_by(self) -> IssuerKey:
        ref = self.parsed.issuer_ref
        return IssuerKey.of(ref.kind, ref.name, self.namespace)

    def with_history(self, status: dict, certificate: x509.Certificate | bytes | None, revision: object) -> dict:
        """status with this issuance recorded in status.issuanceHistory (bounded by revisionHistoryLimit),
        so a revocation of AllValid knows every serial still valid. Part of the one status patch."""
        if isinstance(certificate, bytes):
            try:
                certificate = parse_certificates(certificate)[0]
            except PKIError:
                return status
        if certificate is None or not isinstance(revision, int):
            return status
        record = IssuanceRecord(revision, certificate.serial_number, certificate.not_valid_after_utc,
                                self.issued_by())
        history = record_issuance(parse_history(self.status, self.namespace), record,
                                  self.parsed.revision_history_limit)
        return {**status, HISTORY_FIELD: history_status(history)}

    def fail(self, reason: str, message: str) -> None:
        log.warning("issuing %s/%s failed: %s: %s", self.namespace, self.name, reason, message)
        self.c.metrics.issuance_failures.labels(reason).inc()
        wanted = st.with_times(st.failed_status(self.status, self.generation, self.now, reason, message),
                               self.current_times())
        self.write_status(wanted)
        self.c.events.record(self.obj, "Warning", "Failed", f"{reason}: {message}")
        self.set_not_ready_metrics()
        self.requeue_at = self.c.backoff.retry_at(st.failure_record(wanted))

    def wait(self, d: Wait) -> None:
        if d.reason != "Backoff":  # backing off: the failure is already reported
            self.report_not_ready(d.reason, d.message)
        self.requeue_at = d.retry_at

    def report_not_ready(self, reason: str, message: str) -> None:
        old = st.find_condition(self.status, st.READY) or {}
        wanted = st.with_times(st.not_ready_status(self.status, self.generation, self.now, reason, message),
                               self.current_times())
        if self.write_status(wanted) and old.get("reason") != reason:
            self.c.events.record(self.obj, "Warning", reason, message)
        self.set_not_ready_metrics()

    def current_times(self):
        """The times of the certificate the Secret holds now, even when it is not up to date."""
        return certificate_times(self.observed) if self.observed else None

    def set_not_ready_metrics(self) -> None:
        times = self.current_times()
        self.c.metrics.set_certificate(self.namespace, self.name, self.issuer_labels(), "False", *(times or ()))

    # --- helpers -------------------------------------------------------------------------

    def write_status(self, wanted: dict) -> bool:
        if wanted == self.status:
            return False
        updated = self.c.write_status(CERTIFICATE, self.namespace, self.name, wanted)
        self.status = updated.get("status") or wanted
        return True

    def write_secret(self, new: SecretState, ours: bool) -> None:
        """One request. A Secret we do not hold yet is applied without force, so a Secret of that name
        that someone else wrote makes the server answer 409 instead of being taken over; only then
        is it read, to tell our own (say, from before its label was cached) from a foreign one."""
        if ours:
            self.c.secrets.apply(self.namespace, new)
            return
        try:
            self.c.secrets.apply(self.namespace, new, force=False)
        except ApiError as e:
            if not e.conflict:
                raise
            existing = self.c.secrets.read(self.namespace, self.parsed.secret_name)
            if existing is not None and existing.labels.get(CERTIFICATE_NAME) != self.name:
                raise IssuanceError("SecretMismatch", f"Secret {self.parsed.secret_name} already exists and is not "
                                    "managed by this Certificate: delete it or choose another secretName") from None
            self.c.secrets.apply(self.namespace, new)

    def pkcs12_password(self) -> bytes | None:
        p12 = self.parsed.pkcs12
        if not p12 or not p12.create:
            return None
        try:
            secret = self.c.secrets.read(self.namespace, p12.password_secret_name)
        except ApiError as e:
            if e.transient:
                raise
            raise IssuanceError("PasswordSecretUnreadable", e.message) from None
        if secret is None or p12.password_secret_key not in secret.data:
            raise IssuanceError("PasswordSecretNotFound", f"keystores.pkcs12.passwordSecretRef: Secret "
                                f"{p12.password_secret_name} with key {p12.password_secret_key} not found")
        return secret.data[p12.password_secret_key]

    def issuer_labels(self) -> tuple[str, str, str]:
        ref = self.spec.issuer_ref if self.spec else None
        if ref is None:
            raw = (self.obj.get("spec") or {}).get("issuerRef") or {}
            return raw.get("name", ""), raw.get("kind", "Issuer"), raw.get("group", "certmint.io")
        return ref.name, ref.kind, ref.group


def reconcile_certificate(ctx: Context, key: ObjectKey) -> Result:
    obj = ctx.objects.get(key)
    if obj is None:
        ctx.metrics.forget_certificate(key[1], key[2])
        return Result(forget=True)
    return Reconcile(ctx, key, obj).run()

