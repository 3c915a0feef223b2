"""A client for smallstep step-ca's JWK provisioner, as step-issuer uses it.

How a certificate is signed:
  1. GET /provisioners lists the CA's provisioners; the JWK provisioner named in the issuer
     carries its private key as a JWE (PBES2 password-based encryption), `encryptedKey`.
  2. That JWE is decrypted with the provisioner password. The decrypted key stays in memory
     in a Provisioner handle and is never written, logged or shown.
  3. Per issuance, a one-time token (a JWS signed with that key) names the subject, the SANs,
     the root's fingerprint, a unique id and a five-minute lifetime, with the CA's sign
     endpoint as audience.
  4. POST /1.0/sign {csr, ott, notBefore, notAfter} returns the leaf and the intermediates.
     Only the CSR leaves certmint; the certificate's private key never does.

JOSE is done by jwcrypto: it is maintained (Latchset, used by FreeIPA and Keycloak tooling),
implements PBES2 JWE decryption and ES256/ES384/ES512/EdDSA/RS256 JWS on top of
pyca/cryptography, and so no JOSE primitive is written here.

Every HTTPS request is verified against the issuer's caBundle (never unverified), with
timeouts; one StepCAClient per (URL, caBundle) is shared by every issuance through it and
keeps its connections alive. Every failure is a StepCAError whose `.reason` names the cause
for a Ready=False condition and whose `.message` says what happened, without secrets.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import math
import secrets
import select
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwcrypto.jwa  # type: ignore[import-untyped]  # jwcrypto ships no type hints
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException  # type: ignore[import-untyped]

from certmint.pki.csr import requested_names
from certmint.pki.types import ReasonedError

__all__ = [
    "INVALID_CA_BUNDLE", "INVALID_RESPONSE", "PROVISIONER_NOT_FOUND", "REFUSED", "SERVER_ERROR",
    "TLS_VERIFICATION_FAILED", "UNREACHABLE", "UNSUPPORTED_PROVISIONER", "WRONG_PASSWORD",
    "Provisioner", "SignedChain", "StepCAClient", "StepCAClients", "StepCAError",
]

log = logging.getLogger(__name__)

# Reasons, written as they appear in a Ready=False condition.
UNREACHABLE = "Unreachable"  # no connection, a timeout, or the connection broke
TLS_VERIFICATION_FAILED = "TLSVerificationFailed"  # the CA's certificate does not verify against caBundle
PROVISIONER_NOT_FOUND = "ProvisionerNotFound"  # no provisioner with this name and kid
UNSUPPORTED_PROVISIONER = "UnsupportedProvisioner"  # found, but not a JWK provisioner with an encrypted key
WRONG_PASSWORD = "WrongPassword"  # the provisioner key does not decrypt with the password
REFUSED = "Refused"  # the CA said no (4xx): its policy, its maximum duration, a rejected token
SERVER_ERROR = "ServerError"  # the CA failed (5xx)
INVALID_RESPONSE = "InvalidResponse"  # an answer that is not step-ca's API, or a chain that does not verify
INVALID_CA_BUNDLE = "InvalidCABundle"  # caBundle holds no certificate

TOKEN_LIFETIME = dt.timedelta(minutes=5)  # as the step CLI's default; the CA allows one minute of skew
DEFAULT_TIMEOUT = 10.0  # seconds, for the connection and for each read
MAX_RESPONSE_BYTES = 1 << 20  # a chain is a few kilobytes; anything past a megabyte is not step-ca
MAX_PROVISIONER_PAGES = 100

# step-ca encrypts provisioner keys with PBES2 at 600,000 PBKDF2 iterations (go.step.sm/crypto
# jose.PBKDF2Iterations); jwcrypto refuses more than 16,384 by default, as a guard against a
# JWE that makes its reader spin. certmint reads only JWEs fetched from a CA it verified over
# TLS, and still caps the count itself (below) before jwcrypto sees it, so it lifts jwcrypto's
# guard to its own cap.
MAX_PBKDF2_ITERATIONS = 1_200_000
if jwcrypto.jwa.default_max_pbkdf2_iterations < MAX_PBKDF2_ITERATIONS:
    jwcrypto.jwa.default_max_pbkdf2_iterations = MAX_PBKDF2_ITERATIONS

_JWS_ALGORITHMS = {("EC", "P-256"): "ES256", ("EC", "P-384"): "ES384", ("EC", "P-521"): "ES512",
                   ("OKP", "Ed25519"): "EdDSA", ("RSA", None): "RS256"}


class StepCAError(ReasonedError):
    """The CA could not be used; `reason` is one of this module's reason constants."""

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class SignedChain:
    """What the CA returned, verified: the leaf, the intermediates above it, and the root
    from caBundle they chain to (for the Secret's ca.crt)."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, then the intermediates: the Secret's tls.crt."""
        return (self.leaf, *self.intermediates)


@dataclass(frozen=True)
class Provisioner:
    """A JWK provisioner whose key has been decrypted: the handle sign() needs.

    The key is held only here, in memory; repr, str and equality leave it out."""

    name: str
    kid: str
    algorithm: str  # the JWS algorithm the key signs tokens with, e.g. ES256
    _key: jwk.JWK = field(repr=False, compare=False)

    def __reduce__(self) -> Any:  # not picklable: a key must not end up on disk by accident
        raise TypeError("a Provisioner holds a private key and cannot be pickled")


class StepCAClient:
    """One step-ca, reached at `url` and trusted through `ca_bundle` (PEM certificates).

    Thread-safe: requests from several threads share a small pool of kept-alive connections.
    `connections_opened` and `requests_sent` count what the client did, for tests and metrics."""

    def __init__(self, url: str, ca_bundle: bytes, *, timeout: float = DEFAULT_TIMEOUT, max_connections: int = 4):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ValueError(f"the CA URL must be https://host[:port], not {url!r}")  # the model checks it first
        self.url = url.rstrip("/")
        self._host = parsed.hostname
        self._port = parsed.port or 443
        self._prefix = parsed.path.rstrip("/")
        self.roots = _bundle_certificates(ca_bundle)
        self.root = self._fingerprint_root()
        # The token's `sha` claim, as `step ca token` writes it: the SHA-256 of the root's DER.
        self.root_fingerprint = self.root.fingerprint(hashes.SHA256()).hex()
        self._context = ssl.create_default_context(cadata=ca_bundle.decode("ascii", "replace"))
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._timeout = timeout
        self._idle: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self.connections_opened = 0
        self.requests_sent = 0
        # A keyed digest of each password that decrypted a provisioner key, so a re-check
        # with the same password and the same encrypted key skips the deliberately slow
        # PBKDF2. The digest key lives only in this process.
        self._digest_key = secrets.token_bytes(32)
        self._decrypted: dict[tuple[str, str], tuple[str, bytes, Provisioner]] = {}

    def __repr__(self) -> str:
        return f"StepCAClient({self.url!r})"

    # ------------------------------------------------------------------ the Ready check

    def health(self) -> None:
        """Raises StepCAError unless the CA answers GET /health with status ok."""
        status, body = self._request("GET", "/health")
        if status != 200 or _json(body, "/health").get("status") != "ok":
            raise _http_error(status, body, "health check")

    def check(self, name: str, kid: str, password: bytes) -> Provisioner:
        """What makes a step issuer Ready: the CA is healthy, lists the JWK provisioner
        `name` with key id `kid`, and its key decrypts with `password`. Returns the handle
        to sign with; raises StepCAError with the reason otherwise."""
        self.health()
        return self.provisioner(name, kid, password)

    def provisioner(self, name: str, kid: str, password: bytes) -> Provisioner:
        """Fetch the provisioner `name`/`kid` from the CA and decrypt its key with `password`
        (skipped when the encrypted key and the password are the ones already decrypted)."""
        entry = self._find_provisioner(name, kid)
        if entry.get("type") != "JWK":
            raise StepCAError(UNSUPPORTED_PROVISIONER, f'provisioner "{name}" is of type {entry.get("type")}; '
                                                       "certmint signs through JWK provisioners only")
        encrypted = entry.get("encryptedKey")
        if not isinstance(encrypted, str) or not encrypted:
            raise StepCAError(UNSUPPORTED_PROVISIONER,
                              f'provisioner "{name}" publishes no encrypted key, so no token can be signed for it')
        digest = hmac.new(self._digest_key, password, hashlib.sha256).digest()
        with self._lock:
            cached = self._decrypted.get((name, kid))
        if cached is not None and cached[0] == encrypted and hmac.compare_digest(cached[1], digest):
            return cached[2]
        handle = _decrypt_provisioner(name, kid, entry.get("key"), encrypted, password)
        with self._lock:
            self._decrypted[(name, kid)] = (encrypted, digest, handle)
        return handle

    def provisioners(self) -> list[dict[str, Any]]:
        """The CA's provisioners as it lists them (public data), following its pages."""
        found: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(MAX_PROVISIONER_PAGES):
            query = urllib.parse.urlencode({"limit": 100, **({"cursor": cursor} if cursor else {})})
            status, body = self._request("GET", f"/provisioners?{query}")
            if status != 200:
                raise _http_error(status, body, "listing the provisioners")
            page = _json(body, "/provisioners")
            items = page.get("provisioners")
            if not isinstance(items, list):
                raise StepCAError(INVALID_RESPONSE, "the CA's provisioner list has no provisioners array")
            found += [p for p in items if isinstance(p, dict)]
            cursor = page.get("nextCursor") or ""
            if not cursor or not items:
                return found
        raise StepCAError(INVALID_RESPONSE, f"the CA's provisioner list has more than {MAX_PROVISIONER_PAGES} pages")

    def _find_provisioner(self, name: str, kid: str) -> dict[str, Any]:
        listed = self.provisioners()
        named = [p for p in listed if p.get("name") == name]
        for entry in named:
            key = entry.get("key")
            if isinstance(key, dict) and key.get("kid") == kid:
                return entry
        if named:
            kids = ", ".join(sorted(str((p.get("key") or {}).get("kid")) for p in named))
            raise StepCAError(PROVISIONER_NOT_FOUND, f'the CA\'s provisioner "{name}" has key id {kids}, not {kid}')
        names = ", ".join(sorted(str(p.get("name")) for p in listed)) or "none"
        raise StepCAError(PROVISIONER_NOT_FOUND, f'the CA has no provisioner "{name}" (it has: {names})')

    # ------------------------------------------------------------------ issuance

    def token(self, provisioner: Provisioner, csr: x509.CertificateSigningRequest, *,
              now: dt.datetime | None = None) -> str:
        """A one-time token authorising exactly the CSR's names, valid for TOKEN_LIFETIME.

        step-ca requires the CSR's SANs to equal the token's `sans` and its common name to be
        the subject or one of them; the subject is the common name, else the first SAN."""
        names = requested_names(csr)
        subject = names.common_name or next(iter(names.sans), None)
        if not subject:
            raise StepCAError(REFUSED, "the certificate request has neither a common name nor a SAN")
        now = now or dt.datetime.now(dt.timezone.utc)
        # Rounded up to the next second: step-ca refuses a token issued before it started,
        # and a truncated iat would fall before the start of a CA that came up this second.
        issued = math.ceil(now.timestamp())
        claims = {
            "iss": provisioner.name,
            "sub": subject,
            "aud": f"{self.url}/1.0/sign",
            "sans": list(names.sans) or [subject],
            "sha": self.root_fingerprint,
            "jti": secrets.token_hex(32),
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(TOKEN_LIFETIME.total_seconds()),
        }
        header = {"alg": provisioner.algorithm, "kid": provisioner.kid, "typ": "JWT"}
        token = jws.JWS(json.dumps(claims, separators=(",", ":")))
        token.add_signature(provisioner._key, alg=provisioner.algorithm,  # noqa: SLF001 (the handle's own key)
                            protected=json.dumps(header, separators=(",", ":")))
        return str(token.serialize(compact=True))

    def sign(self, provisioner: Provisioner, csr: x509.CertificateSigningRequest, *,
             not_before: dt.datetime | dt.timedelta | None = None,
             not_after: dt.datetime | dt.timedelta | None = None) -> SignedChain:
        """Have the CA sign the CSR with a fresh token. not_after (a time, or a duration from
        now as the CA counts it) asks for the lifetime; the CA refuses one over its maximum.
        Returns the verified chain; raises StepCAError (REFUSED with the CA's own message
        when it says no)."""
        request: dict[str, Any] = {
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "ott": self.token(provisioner, csr),
        }
        if not_before is not None:
            request["notBefore"] = _time_or_duration(not_before)
        if not_after is not None:
            request["notAfter"] = _time_or_duration(not_after)
        started = time.monotonic()
        status, body = self._request("POST", "/1.0/sign", json.dumps(request).encode(),
                                     {"Content-Type": "application/json"})
        if status not in (200, 201):
            raise _http_error(status, body, "signing")
        signed = self._verified_chain(_json(body, "/1.0/sign"), csr)
        log.debug("step-ca %s signed serial %x in %.0f ms", self.url, signed.leaf.serial_number,
                  (time.monotonic() - started) * 1000)
        return signed

    def _verified_chain(self, answer: dict[str, Any], csr: x509.CertificateSigningRequest) -> SignedChain:
        """The chain from a sign answer, checked link by link up to a root in caBundle, with
        a leaf for the CSR's key: a CA that answers something else is not trusted blindly."""
        pems = answer.get("certChain") or [p for p in (answer.get("crt"), answer.get("ca")) if p]
        try:
            chain = [x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems]
        except (ValueError, TypeError, AttributeError):
            raise StepCAError(INVALID_RESPONSE, "the CA's answer holds no valid certificate chain") from None
        if not chain:
            raise StepCAError(INVALID_RESPONSE, "the CA answered without a certificate")
        if _spki(chain[0].public_key()) != _spki(csr.public_key()):
            raise StepCAError(INVALID_RESPONSE, "the CA returned a certificate for another key than the request's")
        if chain[-1] in self.roots and len(chain) > 1:
            root = chain.pop()
        else:
            root = next((r for r in self.roots if _issued_by(chain[-1], r)), None)  # type: ignore[assignment]
            if root is None:
                raise StepCAError(INVALID_RESPONSE,
                                  f'the chain the CA returned ends at "{chain[-1].issuer.rfc4514_string()}", '
                                  "which is not a root in caBundle")
        for child, parent in zip(chain, [*chain[1:], root], strict=True):
            if not _issued_by(child, parent):
                raise StepCAError(INVALID_RESPONSE, f'"{child.subject.rfc4514_string()}" is not signed by '
                                                    f'"{parent.subject.rfc4514_string()}" in the chain the CA returned')
        return SignedChain(chain[0], tuple(chain[1:]), root)

    def _fingerprint_root(self) -> x509.Certificate:
        """The root the token's `sha` claim names: the bundle's first self-signed certificate,
        or its last certificate when none is self-signed (a bundle that ends at an
        intermediate the CA is trusted under)."""
        return next((c for c in self.roots if c.issuer == c.subject and _issued_by(c, c)), self.roots[-1])

    # ------------------------------------------------------------------ HTTPS

    def close(self) -> None:
        """Close the idle connections; the client stays usable and reconnects on demand."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of one request on a pooled connection. A kept-alive connection the
        CA closed in the meantime is replaced once; every other failure is a StepCAError."""
        headers = {"Accept": "application/json", "User-Agent": "certmint", **(headers or {})}
        with self._slots:
            for attempt in range(2):
                conn, reused = self._checkout()
                try:
                    conn.request(method, self._prefix + path, body=body, headers=headers)
                    with self._lock:
                        self.requests_sent += 1
                    response = conn.getresponse()
                    data = response.read(MAX_RESPONSE_BYTES + 1)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                    conn.close()
                    if reused and attempt == 0:
                        continue
                    raise self._connection_error(e) from None
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    raise self._connection_error(e) from None
                if len(data) > MAX_RESPONSE_BYTES:
                    conn.close()
                    raise StepCAError(INVALID_RESPONSE,
                                      f"the CA's answer to {path} is larger than {MAX_RESPONSE_BYTES} bytes")
                if response.will_close:
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)
                return response.status, data
        raise AssertionError("unreachable")  # pragma: no cover

    def _checkout(self) -> tuple[http.client.HTTPSConnection, bool]:
        """An idle connection that is still open, or a new one (connected lazily)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if conn.sock is not None and not _closed_by_peer(conn.sock):
                return conn, True
            conn.close()
        with self._lock:
            self.connections_opened += 1
        return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context), False

    def _connection_error(self, e: BaseException) -> StepCAError:
        where = f"{self._host}:{self._port}"
        if isinstance(e, ssl.SSLCertVerificationError):
            return StepCAError(TLS_VERIFICATION_FAILED, f"the CA's TLS certificate at {where} does not verify "
                                                        f"against caBundle: {e.verify_message}")
        if isinstance(e, ssl.SSLError):
            return StepCAError(UNREACHABLE, f"TLS handshake with {where} failed: {e.reason or e}")
        if isinstance(e, TimeoutError):
            return StepCAError(UNREACHABLE, f"no answer from {where} within {self._timeout:g} s")
        if isinstance(e, ConnectionRefusedError):
            return StepCAError(UNREACHABLE, f"connection to {where} refused")
        cause = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        return StepCAError(UNREACHABLE, f"connection to {where} failed: {cause}")


class StepCAClients:
    """The shared clients, one per (URL, caBundle): every Issuer and ClusterIssuer naming the
    same CA with the same bundle shares one client and its connections. A different bundle
    gets its own client, so a wrong bundle fails on its own without touching the right one."""

    def __init__(self, factory: Callable[[str, bytes], StepCAClient] = StepCAClient):
        self._factory = factory
        self._clients: dict[tuple[str, str], StepCAClient] = {}
        self._lock = threading.Lock()

    def get(self, url: str, ca_bundle: bytes) -> StepCAClient:
        key = self._key(url, ca_bundle)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._factory(url, ca_bundle)
            return client

    def retain(self, in_use: Iterable[tuple[str, bytes]]) -> None:
        """Close and forget the clients of every (URL, caBundle) not in in_use, e.g. after an
        issuer changed its caBundle or was deleted."""
        keep = {self._key(url, bundle) for url, bundle in in_use}
        with self._lock:
            gone = [self._clients.pop(key) for key in list(self._clients) if key not in keep]
        for client in gone:
            client.close()

    @staticmethod
    def _key(url: str, ca_bundle: bytes) -> tuple[str, str]:
        return url.rstrip("/"), hashlib.sha256(ca_bundle).hexdigest()

    def __len__(self) -> int:
        return len(self._clients)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


# ---------------------------------------------------------------------- helpers


def _bundle_certificates(ca_bundle: bytes) -> tuple[x509.Certificate, ...]:
    try:
        roots = tuple(x509.load_pem_x509_certificates(ca_bundle))
    except ValueError:
        roots = ()
    if not roots:
        raise StepCAError(INVALID_CA_BUNDLE, "caBundle holds no PEM certificate")
    return roots


def _decrypt_provisioner(name: str, kid: str, public: Any, encrypted: str, password: bytes) -> Provisioner:
    """Decrypt the provisioner's JWE-encrypted private JWK with the password, and check that it
    is the private half of the key the CA publishes for this provisioner."""
    header = _jwe_header(encrypted)
    algorithm = str(header.get("alg", ""))
    iterations = header.get("p2c")
    if not algorithm.startswith("PBES2-"):
        raise StepCAError(UNSUPPORTED_PROVISIONER,
                          f'provisioner "{name}" key is encrypted with {algorithm or "no algorithm"}, not PBES2')
    if not isinstance(iterations, int) or not 0 < iterations <= MAX_PBKDF2_ITERATIONS:
        raise StepCAError(UNSUPPORTED_PROVISIONER, f'provisioner "{name}" key asks for {iterations} PBKDF2 '
                                                   f"iterations; certmint accepts up to {MAX_PBKDF2_ITERATIONS}")
    secret = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(password).rstrip(b"=").decode("ascii"))
    payload = None
    try:
        token = jwe.JWE()
        token.deserialize(encrypted, key=secret)
        payload = token.payload
    except (JWException, ValueError, TypeError):
        pass  # raised below, outside this block, so no library exception is chained to ours
    del secret
    if payload is None:
        raise StepCAError(WRONG_PASSWORD,
                          f'the key of provisioner "{name}" does not decrypt with the password from passwordRef')
    key = None
    try:
        key = jwk.JWK.from_json(payload)
    except (JWException, ValueError, TypeError):
        pass
    if key is None or not key.has_private:
        raise StepCAError(UNSUPPORTED_PROVISIONER,
                          f'provisioner "{name}" key decrypts to something that is not a private JWK')
    if isinstance(public, dict) and not _same_public_key(key, public):
        raise StepCAError(UNSUPPORTED_PROVISIONER,
                          f'provisioner "{name}" encrypted key does not match its published key')
    signing = key.get("alg") or _JWS_ALGORITHMS.get((key.get("kty"), key.get("crv")))
    if signing not in set(_JWS_ALGORITHMS.values()) | {"RS384", "RS512", "PS256", "PS384", "PS512"}:
        raise StepCAError(UNSUPPORTED_PROVISIONER,
                          f'provisioner "{name}" key has no JWS algorithm certmint can sign with')
    return Provisioner(name=name, kid=kid, algorithm=str(signing), _key=key)


def _jwe_header(compact: str) -> dict[str, Any]:
    """The protected header of a compact JWE, read before decryption to bound its cost."""
    try:
        encoded = compact.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error):
        header = None
    if not isinstance(header, dict):
        raise StepCAError(UNSUPPORTED_PROVISIONER, "the provisioner's encrypted key is not a compact JWE")
    return header


def _same_public_key(private: jwk.JWK, public: dict[str, Any]) -> bool:
    fields = {"EC": ("crv", "x", "y"), "OKP": ("crv", "x"), "RSA": ("n", "e")}.get(str(private.get("kty")), ())
    mine = private.export_public(as_dict=True)
    return bool(fields) and all(mine.get(f) == public.get(f) for f in fields)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except Exception:  # noqa: BLE001 (a name mismatch, a bad signature or an unsupported key: all "no")
        return False
    return True


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _time_or_duration(value: dt.datetime | dt.timedelta) -> str:
    """step-ca's TimeDuration: an RFC 3339 time, or a Go duration counted from its own clock."""
    if isinstance(value, dt.timedelta):
        return f"{int(value.total_seconds())}s"
    if value.tzinfo is None:
        raise ValueError("times sent to the CA must be timezone-aware")
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StepCAError(INVALID_RESPONSE, f"the CA's answer to {what} is not a JSON object")
    return value


def _http_error(status: int, body: bytes, doing: str) -> StepCAError:
    """The CA's own message for a failed request: 4xx is a refusal, 5xx a failure of the CA."""
    try:
        message = str(json.loads(body).get("message") or "").strip()
    except (ValueError, AttributeError):
        message = ""
    message = message[:500] or f"HTTP {status}"
    if 400 <= status < 500:
        return StepCAError(REFUSED, f"the CA refused {doing}: {message}")
    reason = SERVER_ERROR if status >= 500 else INVALID_RESPONSE
    return StepCAError(reason, f"the CA failed {doing}: {message} (HTTP {status})")


def _closed_by_peer(sock: Any) -> bool:
    """True when an idle kept-alive socket is readable, which for HTTP means the peer closed it."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
