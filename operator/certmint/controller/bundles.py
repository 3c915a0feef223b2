"""Reconcile a Bundle: read its sources, build the bundle (pure, certmint.trust), write it into every
matching namespace (a ConfigMap, and optionally a Secret, named like the Bundle), remove it where it
no longer belongs, report. And the CA-rotation gate the Certificate reconciler asks.

Writes: one server-side apply per target whose content-hash annotation differs from the bundle's,
one delete per target that no longer belongs, one status patch when the status changes. An
unchanged Bundle after a restart writes nothing: the targets' hashes come from a label-selected
watch (kube/objects.py), never from reading their data.

A Bundle that cannot be built (a source that is not PEM, a missing key, nothing valid left)
becomes Synced=False with a reason and an event, and its targets keep their last good content:
an empty trust store would break every TLS client that mounts it.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import certifi
from cryptography import x509

from certmint.controller import status as st
from certmint.controller.context import BUNDLE, CERTIFICATE, ISSUER_KINDS, Context, ObjectKey, Result, issuer_key
from certmint.kube.api import ApiError
from certmint.kube.objects import BUNDLE_LABEL, HASH_ANNOTATION, ObjectCache, digest
from certmint.kube.resources import API_VERSION, core_path, patch_status
from certmint.policy import IssuerState
from certmint.policy.types import CA_CERT, CERTIFICATE_NAME, TLS_CERT
from certmint.trust import (
    CONFIG_MAP,
    DEFAULT_CAS,
    IN_LINE,
    ISSUER_REF,
    KEY_NOT_FOUND,
    SECRET,
    SOURCE_NOT_FOUND,
    BuiltBundle,
    BundleError,
    BundleSpec,
    build_bundle,
    fingerprint,
    parse_bundle_spec,
    parse_certificates_pem,
    selector_matches,
    target_data,
)
from certmint.trust.anchors import (
    TrackedCA,
    from_status,
    next_change,
    rotation_time,
    synced,
    to_status,
    track,
    trusted_since,
)

log = logging.getLogger(__name__)

SYNCED = "Synced"
MANAGED_BY = "app.kubernetes.io/managed-by"
WRITERS = 8  # parallel target writes: 1,000 namespaces in seconds, within the API client's pool
ISSUER_BACKDATE = dt.timedelta(minutes=1)  # a CA's notBefore is backdated this much at issuance (pki.signing)
_default_cas: bytes | None = None


def default_cas() -> bytes:
    """The public CAs of the certifi package, read once."""
    global _default_cas
    if _default_cas is None:
        with open(certifi.where(), "rb") as f:
            _default_cas = f.read()
    return _default_cas


# --- the issuer tree --------------------------------------------------------------------------------


def _ca_secret(ctx: Context, issuer: ObjectKey) -> tuple[str, str] | None:
    obj = ctx.objects.get(issuer)
    ca = ((obj or {}).get("spec") or {}).get("ca") or {}
    if not isinstance(ca, dict) or not ca.get("secretName"):
        return None
    namespace = issuer[1] if issuer[0] == "Issuer" else ctx.options.cluster_resource_namespace
    return namespace, ca["secretName"]


def _secret_name(ctx: Context, certificate: ObjectKey) -> str | None:
    obj = ctx.objects.get(certificate)
    name = ((obj or {}).get("spec") or {}).get("secretName")
    return name if isinstance(name, str) and name else None


def subtree(ctx: Context, top: ObjectKey) -> tuple[list[ObjectKey], list[ObjectKey], list[tuple[str, str]]]:
    """(issuers, certificates, Secrets) at and below an issuer: each CA issuer's CA Secret, each
    certificate it signed and that certificate's Secret, and, when that Secret is another issuer's
    CA, the same again below that issuer, to any depth."""
    issuers: list[ObjectKey] = []
    certificates: list[ObjectKey] = []
    secrets: list[tuple[str, str]] = []
    stack, seen = [top], set()
    while stack:
        issuer = stack.pop()
        if issuer in seen:
            continue
        seen.add(issuer)
        issuers.append(issuer)
        ca = _ca_secret(ctx, issuer)
        if ca:
            secrets.append(ca)
        for certificate in ctx.certificates_of(issuer):
            name = _secret_name(ctx, certificate)
            certificates.append(certificate)
            if name:
                secrets.append((certificate[1], name))
                stack.extend(ctx.issuers_using(certificate[1], name))
    return issuers, certificates, secrets


def ancestors(ctx: Context, issuer: ObjectKey) -> list[ObjectKey]:
    """The issuer, the issuer of its CA certificate, and so on up to the root (as far as certmint
    issued them)."""
    out: list[ObjectKey] = []
    current: ObjectKey | None = issuer
    while current is not None and current not in out:
        out.append(current)
        ca = _ca_secret(ctx, current)
        secret = ctx.secrets.get(*ca) if ca else None
        owner = secret.labels.get(CERTIFICATE_NAME) if secret else None
        cert = ctx.objects.get((CERTIFICATE, ca[0], owner)) if ca and owner else None
        ref = ((cert or {}).get("spec") or {}).get("issuerRef") or {}
        current = issuer_key(ref.get("kind") or "Issuer", ca[0], ref["name"]) if ca and ref.get("name") else None
    return out


def bundles_for_secret(ctx: Context, namespace: str, name: str, owner: str | None) -> set[ObjectKey]:
    """The Bundles whose content a change of this Secret may change: those following an issuer that
    uses it as its CA, or one above the certificate it holds."""
    starts = list(ctx.issuers_using(namespace, name))
    cert = ctx.objects.get((CERTIFICATE, namespace, owner)) if owner else None
    ref = ((cert or {}).get("spec") or {}).get("issuerRef") or {}
    if ref.get("name"):
        starts.append(issuer_key(ref.get("kind") or "Issuer", namespace, ref["name"]))
    return bundles_above(ctx, starts)


def bundles_above(ctx: Context, issuers: Iterable[ObjectKey]) -> set[ObjectKey]:
    return {b for issuer in issuers for a in ancestors(ctx, issuer) for b in ctx.bundles_following(a)}


@functools.lru_cache(maxsize=1024)
def _anchors(pem: bytes, from_ca_crt: bool) -> tuple[x509.Certificate, ...]:
    """The anchors in a ca.crt, or the self-signed top of a tls.crt. Cached by content: thousands of
    leaves below one CA carry the same ca.crt bytes, parsed once."""
    try:
        certificates = parse_certificates_pem(pem, "a Secret")
    except BundleError:
        return ()
    if from_ca_crt:
        return tuple(certificates)
    top = certificates[-1]
    return (top,) if top.issuer == top.subject else ()


def _roots_of_secret(ctx: Context, namespace: str, name: str) -> tuple[x509.Certificate, ...]:
    """The trust anchors a Secret carries: its ca.crt, else the self-signed top of its tls.crt."""
    secret = ctx.secrets.get(namespace, name) or ctx.secrets.read(namespace, name)
    if secret is None:
        return ()
    if secret.data.get(CA_CERT):
        return _anchors(bytes(secret.data[CA_CERT]), True)
    if secret.data.get(TLS_CERT):
        return _anchors(bytes(secret.data[TLS_CERT]), False)
    return ()


def issuer_roots(ctx: Context, issuer: ObjectKey) -> list[x509.Certificate]:
    """Every root in use at and below the issuer: the current root of each CA issuer in the tree, and
    the root of every certificate issued below it, which is the previous root until it is re-issued."""
    _, _, secrets = subtree(ctx, issuer)
    roots: dict[int, x509.Certificate] = {}
    for namespace, name in dict.fromkeys(secrets):
        for root in _roots_of_secret(ctx, namespace, name):
            roots.setdefault(id(root), root)  # the cache hands out one object per distinct ca.crt
    return list(roots.values())


# --- reading the sources -------------------------------------------------------------------------


def read_sources(ctx: Context, spec: BundleSpec) -> tuple[list[tuple[str, bytes | str]], list[x509.Certificate]]:
    """(parts, issuer roots): the PEM of every source but issuerRef, and the roots issuerRef sources
    follow (kept separately: their retirement is tracked in the status)."""
    trust_namespace = ctx.options.cluster_resource_namespace
    parts: list[tuple[str, bytes | str]] = []
    roots: list[x509.Certificate] = []
    for source in spec.sources:
        where = source.describe()
        if source.kind == SECRET:
            secret = ctx.secrets.get(trust_namespace, source.name) or ctx.secrets.read(trust_namespace, source.name)
            if secret is None:
                raise BundleError(SOURCE_NOT_FOUND, f"{where}: Secret {trust_namespace}/{source.name} does not exist")
            if source.key not in secret.data:
                raise BundleError(KEY_NOT_FOUND, f"{where}: Secret {trust_namespace}/{source.name} has no key "
                                                 f"{source.key}")
            parts.append((where, secret.data[source.key]))
        elif source.kind == CONFIG_MAP:
            cm = ctx.api.get_or_none(core_path("configmaps", trust_namespace, source.name))
            if cm is None:
                raise BundleError(SOURCE_NOT_FOUND, f"{where}: ConfigMap {trust_namespace}/{source.name} does not "
                                                    "exist")
            data = cm.get("data") or {}
            if source.key not in data:
                raise BundleError(KEY_NOT_FOUND, f"{where}: ConfigMap {trust_namespace}/{source.name} has no key "
                                                 f"{source.key}")
            parts.append((where, data[source.key]))
        elif source.kind == IN_LINE:
            parts.append((where, source.pem))
        elif source.kind == DEFAULT_CAS:
            parts.append((where, default_cas()))
        elif source.kind == ISSUER_REF:
            key = issuer_key(source.issuer_kind, trust_namespace, source.name)
            if ctx.objects.get(key) is None:
                raise BundleError(SOURCE_NOT_FOUND, f"{where}: {source.issuer_kind} {source.name} does not exist")
            found = issuer_roots(ctx, key)
            if not found:
                raise BundleError(SOURCE_NOT_FOUND, f"{where}: the issuer has no CA certificate yet")
            roots.extend(found)
    return parts, roots


# --- writing the targets -------------------------------------------------------------------------


def matching_namespaces(ctx: Context, spec: BundleSpec) -> list[str]:
    assert ctx.trust is not None
    watched = ctx.trust.watched
    return sorted(ns for (_, ns), value in ctx.trust.namespaces.items()
                  if (not watched or ns in watched) and not value["deleting"]
                  and selector_matches(spec, value["labels"]))


def _metadata(name: str, namespace: str, owner: dict, digest: str) -> dict:
    meta = owner.get("metadata") or {}
    return {"name": name, "namespace": namespace,
            "labels": {BUNDLE_LABEL: name, MANAGED_BY: "certmint"},
            "annotations": {HASH_ANNOTATION: digest},
            # Garbage collection removes the targets with the Bundle on a cluster that runs it;
            # the reconciler's own cleanup covers the rest (and namespaces that stop matching).
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": BUNDLE, "name": name, "uid": meta.get("uid", ""),
                                 "controller": True}]}


class TargetConflict(Exception):
    pass


def _apply(ctx: Context, cache: ObjectCache, path: str, body: dict, namespace: str, name: str) -> None:
    """One server-side apply. A target we do not hold yet is applied without force, so a ConfigMap or
    Secret of that name that someone else owns is reported, not taken over."""
    ours = cache.get(namespace, name) is not None
    try:
        cache.remember(ctx.api.apply(path, body, force=ours))
    except ApiError as e:
        if e.conflict:
            raise TargetConflict(namespace) from None
        raise


def sync_targets(ctx: Context, name: str, obj: dict, spec: BundleSpec, built: BuiltBundle,
                 namespaces: list[str]) -> tuple[int, list[str]]:
    """Write the bundle where a target's hash differs. Returns (writes, namespaces in conflict)."""
    assert ctx.trust is not None
    trust = ctx.trust
    want_secret = spec.target.secret_key is not None
    pem_digest = digest(built.pem)

    def fresh(entry: dict | None, key: str | None) -> bool:
        """The target holds this bundle: our hash annotation, and the PEM as we wrote it (an edit by
        someone else changes the data and leaves the annotation)."""
        return entry is not None and entry["hash"] == built.hash and entry["digests"].get(key) == pem_digest

    def config_map_fresh(namespace: str) -> bool:
        return fresh(trust.config_maps.get(namespace, name), spec.target.config_map_key)

    def secret_fresh(namespace: str) -> bool:
        return not want_secret or fresh(trust.secrets.get(namespace, name), spec.target.secret_key)

    todo = [ns for ns in namespaces if not config_map_fresh(ns) or not secret_fresh(ns)]
    if not todo:
        return 0, []
    data, binary, secret_data = target_data(built, spec.target)
    binary64 = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    secret64 = {k: base64.b64encode(v).decode() for k, v in secret_data.items()}
    writes = 0

    def write(namespace: str) -> int:
        n = 0
        if not config_map_fresh(namespace):
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(name, namespace, obj, built.hash),
                    "data": data, **({"binaryData": binary64} if binary64 else {})}
            _apply(ctx, trust.config_maps, core_path("configmaps", namespace, name), body, namespace, name)
            n += 1
        if not secret_fresh(namespace):
            body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": _metadata(name, namespace, obj, built.hash), "data": secret64}
            _apply(ctx, trust.secrets, core_path("secrets", namespace, name), body, namespace, name)
            n += 1
        return n

    conflicts: list[str] = []
    errors: list[ApiError] = []
    with ThreadPoolExecutor(max_workers=min(WRITERS, len(todo)), thread_name_prefix=f"bundle-{name}") as pool:
        for future in [pool.submit(write, ns) for ns in todo]:
            try:
                writes += future.result()
            except TargetConflict as e:
                conflicts.append(str(e))
            except ApiError as e:
                errors.append(e)
    if errors:
        raise errors[0]  # retried through the rate limiter; what was written is in the caches already
    return writes, sorted(conflicts)


def cleanup(ctx: Context, name: str, keep_config_maps: set[str], keep_secrets: set[str]) -> int:
    """Delete this Bundle's targets outside the namespaces it writes to. The control plane's garbage
    collector would remove them with a deleted Bundle, but not from a namespace that stopped matching,
    and not at all where no garbage collector runs: so the reconciler does it itself."""
    assert ctx.trust is not None
    deletes = 0
    for cache, keep, resource in ((ctx.trust.config_maps, keep_config_maps, "configmaps"),
                                  (ctx.trust.secrets, keep_secrets, "secrets")):
        for (namespace, target), value in cache.items():
            if target != name or value["labels"].get(BUNDLE_LABEL) != name or namespace in keep:
                continue
            try:
                ctx.api.request("delete", "DELETE", core_path(resource, namespace, name))
            except ApiError as e:
                if not e.not_found:
                    raise
            cache.forget(namespace, name)
            deletes += 1
    return deletes


# --- the reconciler ------------------------------------------------------------------------------


def _status(current: dict, generation: int, now: dt.datetime, ok: bool, reason: str, message: str,
            **fields: object) -> dict:
    wanted = st.with_condition(current, SYNCED, "True" if ok else "False", reason, message, generation, now)
    wanted.update({k: v for k, v in fields.items() if v is not None})
    return wanted


def reconcile_bundle(ctx: Context, key: ObjectKey) -> Result:
    _, _, name = key
    obj = ctx.objects.get(key)
    if obj is None:
        deleted = cleanup(ctx, name, set(), set())
        if deleted:
            log.info("Bundle %s is gone: deleted its %d targets", name, deleted)
        return Result(forget=True)
    now = ctx.now()
    current = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation", 0)
    grace = ctx.options.trust_propagation
    previous = from_status(current.get("issuerCAs"))
    try:
        spec = parse_bundle_spec(obj.get("spec") or {})
        parts, roots = read_sources(ctx, spec)
        tracked = track(previous, roots, now, grace)
        built = build_bundle([*parts, *((f"issuer CA {t.fingerprint[:16]}", t.pem) for t in tracked)],
                             spec.target, now)
    except BundleError as e:
        return _failed(ctx, obj, current, generation, now, e.reason, e.message)

    namespaces = matching_namespaces(ctx, spec)
    writes, conflicts = sync_targets(ctx, name, obj, spec, built, namespaces)
    written = [ns for ns in namespaces if ns not in conflicts]
    deletes = cleanup(ctx, name, set(written), set(written) if spec.target.secret_key else set())
    if writes or deletes:
        log.info("Bundle %s: %d certificates into %d namespaces; %d writes, %d deletes", name,
                 len(built.certificates), len(written), writes, deletes)
    tracked = synced(tracked, now) if not conflicts else tracked
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        reason, message = "TargetConflict", f"a ConfigMap or Secret named {name} that certmint does not manage " \
                                            f"exists in {shown}: not overwritten"
    else:
        reason, message = SYNCED, f"{len(built.certificates)} certificates written to {len(written)} namespaces"
    wanted = _status(current, generation, now, not conflicts, reason, message, certificates=len(built.certificates),
                     namespaces=len(written), hash=built.hash, issuerCAs=to_status(tracked))
    if wanted != current:
        updated = ctx.remember(BUNDLE, patch_status(ctx.api, BUNDLE, None, name, wanted))
        old = st.find_condition(current, SYNCED) or {}
        if old.get("reason") != reason:
            ctx.events.record(updated, "Warning" if conflicts else "Normal", reason, message)
    # Certificates waiting for the new root to reach the workloads look again now that it has.
    newly_trusted = {t.fingerprint for t in tracked if t.since} - {t.fingerprint for t in previous if t.since}
    wake: tuple[ObjectKey, ...] = ()
    if newly_trusted:
        wake = tuple(c for s in spec.sources if s.kind == ISSUER_REF
                     for c in subtree(ctx, issuer_key(s.issuer_kind, ctx.options.cluster_resource_namespace,
                                                      s.name))[1])
    return Result(requeue_at=_recheck_at(ctx, spec, tracked, now), wake=wake)


def _failed(ctx: Context, obj: dict, current: dict, generation: int, now: dt.datetime, reason: str,
            message: str) -> Result:
    """Report why the Bundle cannot be built; the targets keep what they hold."""
    log.warning("Bundle %s: %s: %s", (obj.get("metadata") or {}).get("name"), reason, message)
    wanted = _status(current, generation, now, False, reason, message + " (the targets keep their previous content)")
    if wanted != current:
        updated = ctx.remember(BUNDLE, patch_status(ctx.api, BUNDLE, None, (obj.get("metadata") or {})["name"],
                                                    wanted))
        old = st.find_condition(current, SYNCED) or {}
        if old.get("reason") != reason or old.get("status") != "False":
            ctx.events.record(updated, "Warning", reason, message)
    return Result(requeue_at=now + ctx.options.issuer_recheck)


def _recheck_at(ctx: Context, spec: BundleSpec, tracked: tuple[TrackedCA, ...], now: dt.datetime) -> dt.datetime:
    """Secrets and ConfigMaps we do not watch, and the public CAs, are read again periodically; a
    retiring root leaves, and expiring certificates drop out, at their time."""
    times = [now + ctx.options.issuer_recheck]
    change = next_change(tracked, ctx.options.trust_propagation)
    if change is not None:
        times.append(max(change, now + dt.timedelta(seconds=1)))
    return min(times)


# --- the rotation gate, for the Certificate reconciler ----------------------------------------------


def rotation_gate(ctx: Context, key: ObjectKey, issuer: IssuerState, issuer_ref: ObjectKey) -> dt.datetime | None:
    """When this certificate may be re-issued if its issuer's CA has a new key (the IssuerChanged
    trigger): after every Bundle that follows the issuer, or one above it, has held the issuer's
    current root for the propagation delay, at the certificate's own offset in the spread window.
    While a Bundle does not hold the new root yet there is no time: the Bundle wakes the certificates
    below it once it has written the new root everywhere; until then the certificate keeps its
    ordinary renewal time (the gate returns the CA's own expiry, which no renewal time passes)."""
    signer = issuer.signer
    if signer is None or issuer.external:
        return None
    root = fingerprint(signer.root)
    bundles = [ctx.objects.get(b) for b in bundles_above(ctx, [issuer_ref])]
    tracked = [{t.fingerprint: t for t in from_status((b.get("status") or {}).get("issuerCAs"))}
               for b in bundles if b is not None]
    at = rotation_time(f"{key[1]}/{key[2]}", signer.certificate.not_valid_before_utc + ISSUER_BACKDATE,
                       trusted_since(tracked, root), ctx.options.trust_propagation, ctx.options.rotation_spread)
    return at if at is not None else signer.certificate.not_valid_after_utc


def wake_for_namespace(ctx: Context, old: dict | None, new: dict | None) -> list[ObjectKey]:
    """A namespace appeared, went, or changed its labels: the Bundles (few) look again."""
    if old is not None and new is not None and old.get("labels") == new.get("labels"):
        return []
    return [k for k in ctx.objects.keys(lambda k: k[0] == BUNDLE)]  # type: ignore[misc]


def wake_for_issuer(ctx: Context, key: ObjectKey) -> set[ObjectKey]:
    return bundles_above(ctx, [key]) if key[0] in ISSUER_KINDS else set()
