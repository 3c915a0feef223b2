"""The step issuer as the controller uses it: a Ready check and an issuance, in the shapes
the other issuers already have (IssuerState, issuance.Issued, IssuanceError).

    ctx.step = StepIssuers()                                   # one per operator

    # reconcile of an Issuer/ClusterIssuer with spec.step (key: its ObjectKey)
    secret = <the passwordRef Secret, read like a CA issuer's Secret, or None>
    state = ctx.step.check(key, spec.step, secret, namespace)  # IssuerState, never raises

    # issuance of a Certificate whose issuer is a step issuer (one Secret write, one status
    # patch afterwards, exactly as with issue_certificate)
    issued = ctx.step.issue(issuer_key, cert_spec, previous_secret, now)   # raises IssuanceError

Blocking I/O: call both from the worker threads, never from the event loop.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from certmint.external.stepca import Provisioner, StepCAClient, StepCAClients, StepCAError
from certmint.issuance import BACKDATE, IssuanceError, Issued, reusable_key
from certmint.model.certificate import CertificateSpec
from certmint.model.issuer import StepSpec
from certmint.pki import (
    PKIError,
    build_csr,
    certificates_pem,
    encode_private_key,
    generate_key,
)
from certmint.pki.keys import PrivateKey
from certmint.pki.types import KeySpec
from certmint.policy.types import IssuerState, SecretState

__all__ = ["READY", "StepIssuers", "StepSigner"]

READY = "Verified"  # step-issuer's reason for a Ready StepIssuer


@dataclass(frozen=True)
class StepSigner:
    """What a Ready step issuer signs with: its shared client and its decrypted provisioner."""

    client: StepCAClient
    provisioner: Provisioner

    def issue(self, spec: CertificateSpec, previous: SecretState | None, now: dt.datetime,
              new_key: Callable[[KeySpec], PrivateKey] = generate_key) -> Issued:
        """A new certificate for spec, signed by the CA: the key is made here (or reused under
        rotationPolicy Never), a CSR goes to the CA, the verified chain comes back.

        notBefore is backdated as certmint's own issuers do and notAfter is notBefore +
        duration, both sent explicitly, so the lifetime is exactly spec.duration (step-ca
        backdates only when notBefore is left to it). Raises IssuanceError with the CA's reason
        (Refused with its own message for a forbidden SAN or a duration over its maximum)."""
        key = reusable_key(spec, previous) or new_key(spec.template.key)
        try:
            csr = build_csr(spec.template, key)
        except PKIError as e:
            raise IssuanceError("SigningFailed", str(e)) from None
        not_before = (now - BACKDATE).replace(microsecond=0)
        try:
            signed = self.client.sign(self.provisioner, csr, not_before=not_before,
                                      not_after=not_before + spec.template.duration)
        except StepCAError as e:
            raise IssuanceError(e.reason, e.message) from None
        return Issued(encode_private_key(key, spec.template.key.encoding), certificates_pem(signed.chain),
                      certificates_pem([signed.root]), signed.leaf, clamped=False)


class StepIssuers:
    """The step issuers' signers, by issuer key, set by their Ready checks; one StepCAClients
    shares the HTTPS clients between issuers that name the same CA and caBundle."""

    def __init__(self, clients: StepCAClients | None = None):
        self.clients = clients or StepCAClients()
        self._lock = threading.Lock()
        self._signers: dict[Hashable, tuple[StepSpec, StepSigner]] = {}
        # One check per issuer at a time. Until an issuer's own reconcile has stored its state,
        # every Certificate reconciled before it checks the issuer itself (at an operator start,
        # all of them at once): callers that arrive while a check of the same issuer with the
        # same inputs runs take its result instead of each asking the CA and running PBKDF2.
        # Serialising also keeps a failing and a succeeding check from leaving a signer that
        # disagrees with the last state returned.
        self._checking: dict[Hashable, threading.Lock] = {}
        self._checked: dict[Hashable, tuple[tuple[object, ...], float, IssuerState]] = {}
        self._digest_key = secrets.token_bytes(32)  # compares passwords without keeping them

    def check(self, key: Hashable, step: StepSpec, password_secret: SecretState | None,
              namespace: str) -> IssuerState:
        """The Ready check: the password Secret has the key, the CA answers /health, and the
        provisioner's key decrypts with the password. A Ready state makes the signer
        available to issue(); any other state removes it. Never raises.

        A check of the same issuer with the same inputs that finishes while this call waits
        for it is this call's answer."""
        password = password_secret.data.get(step.password_secret_key) if password_secret is not None else None
        inputs = (step, namespace, password_secret is not None,
                  None if password is None else hmac.new(self._digest_key, password, hashlib.sha256).digest())
        asked = time.monotonic()
        with self._lock:
            checking = self._checking.setdefault(key, threading.Lock())
        with checking:
            with self._lock:
                last = self._checked.get(key)
            if last is not None and last[0] == inputs and last[1] >= asked:
                return last[2]
            state = self._check(key, step, password_secret, namespace)
            with self._lock:
                self._checked[key] = (inputs, time.monotonic(), state)
            return state

    def _check(self, key: Hashable, step: StepSpec, password_secret: SecretState | None,
               namespace: str) -> IssuerState:
        where = f"{namespace}/{step.password_secret_name}"
        password = password_secret.data.get(step.password_secret_key) if password_secret is not None else None
        if password_secret is None:
            return self._not_ready(key, "SecretNotFound", f"provisioner password Secret {where} does not exist")
        if password is None:
            return self._not_ready(key, "SecretNotFound",
                                   f"provisioner password Secret {where} has no key {step.password_secret_key}")
        try:
            client = self.clients.get(step.url, step.ca_bundle)
            provisioner = client.check(step.provisioner_name, step.provisioner_kid, password)
        except StepCAError as e:
            return self._not_ready(key, e.reason, e.message)
        with self._lock:
            self._signers[key] = (step, StepSigner(client, provisioner))
        return IssuerState(True, READY, f"step-ca {step.url} is healthy and provisioner "
                                        f"{step.provisioner_name} ({step.provisioner_kid}) is ready to sign")

    def signer(self, key: Hashable, step: StepSpec | None = None) -> StepSigner | None:
        """The signer of a Ready step issuer (of this spec, when given), else None."""
        with self._lock:
            held = self._signers.get(key)
        if held is None or (step is not None and held[0] != step):
            return None
        return held[1]

    def issue(self, key: Hashable, spec: CertificateSpec, previous: SecretState | None, now: dt.datetime,
              step: StepSpec | None = None, new_key: Callable[[KeySpec], PrivateKey] = generate_key) -> Issued:
        signer = self.signer(key, step)
        if signer is None:
            raise IssuanceError("IssuerNotReady", "the step issuer has not passed its Ready check")
        return signer.issue(spec, previous, now, new_key)

    def forget(self, key: Hashable) -> None:
        """The issuer is gone: drop its signer, and close the clients no remaining issuer uses."""
        with self._lock:
            self._signers.pop(key, None)
            self._checked.pop(key, None)
            self._checking.pop(key, None)
            in_use = [(step.url, step.ca_bundle) for step, _ in self._signers.values()]
        self.clients.retain(in_use)

    def _not_ready(self, key: Hashable, reason: str, message: str) -> IssuerState:
        with self._lock:
            self._signers.pop(key, None)
        return IssuerState(False, reason, message)
