"""Commands about Certificates on the cluster: `status`, `list` and `renew`."""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import re
import sys
import time
from typing import Any

from certmint.cli.common import (
    FAILED,
    CliError,
    Cluster,
    Style,
    UsageError,
    api_error,
    condition,
    connect,
    days_left,
    dump,
    duration,
    human_delta,
    issuer_ref_text,
    kube_flags,
    now,
    output_flag,
    parse_time,
    relative,
    rfc3339,
    table,
)

RESOURCE = "certificate.certmint.io"
EVENTS_SHOWN = 10
_TRIGGER = re.compile(r"trigger (\w+)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="why a Certificate is (not) Ready: conditions, issuer, Secret, events",
                       description="Everything about one Certificate on one screen: its conditions, what triggered "
                                   "the last issuance, the renewal time or the back-off after failures, the issuer "
                                   "and whether it is Ready, the Secret's certificate, and the recent events.")
    p.add_argument("name", help="the Certificate's name")
    kube_flags(p)
    output_flag(p, choices=("text", "json", "yaml"), default="text")
    p.set_defaults(handler=status)

    p = sub.add_parser("list", help="Certificates sorted by expiry, with Ready, issuer and days left",
                       description="Certificates sorted by expiry (soonest first; not yet issued last).")
    kube_flags(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("--expiring", type=duration, metavar="DURATION",
                   help="only those whose certificate expires within DURATION (e.g. 30d, 72h), expired ones included")
    p.add_argument("--chunk-size", type=_chunk_size, default=500, metavar="N",
                   help="Certificates per API request, as kubectl's --chunk-size (default 500; 0: all in one)")
    output_flag(p)
    p.set_defaults(handler=list_certificates)

    p = sub.add_parser("renew", help="ask the operator to renew Certificates now",
                       description="Sets the certmint.io/renew annotation; the operator issues once for each new "
                                   "value. With --wait, waits for the new revision to be Ready.")
    p.add_argument("names", nargs="*", metavar="NAME", help="Certificates to renew")
    p.add_argument("--all", action="store_true", help="every Certificate in the namespace (or all, with -A)")
    p.add_argument("-l", "--selector", help="Certificates matching this label selector")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="with --all or -l: in every namespace")
    p.add_argument("--wait", action="store_true", help="wait until each has a new revision and is Ready")
    p.add_argument("--timeout", type=duration, default=dt.timedelta(minutes=2),
                   help="how long --wait waits (default 2m)")
    kube_flags(p)
    p.set_defaults(handler=renew)


def _chunk_size(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid chunk size {text!r}: a whole number, 0 for no chunking")
    return int(text)


# --- status -----------------------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    cluster = connect(args)
    certificate = _get_certificate(cluster, args.name)
    report = status_report(cluster, certificate)
    if args.output in ("json", "yaml"):
        print(dump(report, args.output), end="" if args.output == "yaml" else "\n")
    else:
        print(render_status(report, Style()))
    return 0


def _get_certificate(cluster: Cluster, name: str, namespace: str | None = None) -> dict:
    from certmint.kube.api import ApiError

    namespace = namespace or cluster.namespace
    try:
        return cluster.api.get(cluster.path("certificates", name, namespace))
    except ApiError as e:
        raise api_error(e, f"certificate {name!r} in namespace {namespace!r}") from None


def status_report(cluster: Cluster, certificate: dict) -> dict:
    """What `status` shows, as data (also the -o json/yaml output)."""
    meta, spec, st = certificate.get("metadata", {}), certificate.get("spec") or {}, certificate.get("status") or {}
    ready, issuing = condition(certificate, "Ready"), condition(certificate, "Issuing")
    report: dict[str, Any] = {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "ready": ready.get("status", "Unknown"),
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")}
                       for c in st.get("conditions") or []],
        "revision": st.get("revision"),
        "lastTrigger": _last_trigger(issuing),
        "notBefore": st.get("notBefore"),
        "notAfter": st.get("notAfter"),
        "renewalTime": st.get("renewalTime"),
        "backoff": _backoff(st),
        "issuer": _issuer(cluster, meta.get("namespace"), spec.get("issuerRef") or {}),
        "secret": _secret(cluster, meta.get("namespace"), spec.get("secretName")),
        "events": _events(cluster, certificate),
    }
    return report


def _last_trigger(issuing: dict) -> str | None:
    """The trigger of the last issuance: the operator puts it in the Issuing condition's message."""
    if issuing.get("status") == "True":
        return issuing.get("reason")
    found = _TRIGGER.search(issuing.get("message") or "")
    return found.group(1) if found else None


def _backoff(st: dict) -> dict | None:
    attempts = int(st.get("failedIssuanceAttempts") or 0)
    last = parse_time(st.get("lastFailureTime"))
    if attempts <= 0 or last is None:
        return None
    from certmint.policy import Backoff, FailureRecord

    # The operator does not publish its retry time; this is when it retries with the default
    # --backoff-initial/--backoff-max, which is what a person needs to know whether to wait.
    retry = Backoff().retry_at(FailureRecord(attempts, last))
    return {"failedAttempts": attempts, "lastFailureTime": rfc3339(last), "nextAttemptAbout": rfc3339(retry)}


def _issuer(cluster: Cluster, namespace: str, ref: dict) -> dict:
    from certmint.kube.api import ApiError

    kind, name, group = ref.get("kind") or "Issuer", ref.get("name", ""), ref.get("group") or "certmint.io"
    out: dict[str, Any] = {"kind": kind, "name": name}
    if group != "certmint.io" or kind not in ("Issuer", "ClusterIssuer"):
        out.update(ready="Unknown", message=f"an issuer of another group ({group}); certmint does not serve it")
        return out
    plural = "issuers" if kind == "Issuer" else "clusterissuers"
    try:
        issuer = cluster.api.get(cluster.path(plural, name, namespace, cluster_scoped=kind == "ClusterIssuer"))
    except ApiError as e:
        out.update(ready="Unknown", message="not found" if e.not_found else str(api_error(e)))
        return out
    c = condition(issuer, "Ready")
    out.update(ready=c.get("status", "Unknown"), reason=c.get("reason"), message=c.get("message"))
    return out


def _secret(cluster: Cluster, namespace: str, name: str | None) -> dict | None:
    if not name:
        return None
    from certmint.kube.api import ApiError

    out: dict[str, Any] = {"name": name}
    try:
        secret = cluster.api.get(cluster.path("secrets", name, namespace, group=""))
    except ApiError as e:
        out["error"] = "does not exist" if e.not_found else str(api_error(e))
        return out
    tls_crt = base64.b64decode((secret.get("data") or {}).get("tls.crt") or "")
    if not tls_crt:
        out["error"] = "has no tls.crt"
        return out
    from certmint.cli.inspect import summary
    from certmint.pki import PKIError, parse_certificates

    try:
        leaf = parse_certificates(tls_crt)[0]
    except PKIError as e:
        out["error"] = f"tls.crt: {e}"
        return out
    out.update(summary(leaf))
    return out


def _events(cluster: Cluster, certificate: dict) -> list[dict]:
    """The Certificate's recent events, oldest first (as kubectl describe shows them)."""
    from certmint.kube.api import ApiError

    meta = certificate.get("metadata", {})
    selector = f"involvedObject.kind=Certificate,involvedObject.name={meta.get('name')}"
    try:
        answer = cluster.api.request("list", "GET", cluster.path("events", namespace=meta.get("namespace"), group=""),
                                     query=[("fieldSelector", selector)])
    except ApiError:
        return []  # events are a courtesy: a user allowed to read Certificates may not read events
    uid = meta.get("uid")
    events = [e for e in answer.get("items") or [] if (e.get("involvedObject") or {}).get("uid") in (uid, None)]
    # Events recorded in the same second keep the order the API server stored them in.
    events.sort(key=lambda e: (_event_time(e), int((e.get("metadata") or {}).get("resourceVersion") or 0)))
    return [{"type": e.get("type"), "reason": e.get("reason"), "lastTimestamp": rfc3339(_event_time(e)),
             "count": e.get("count") or 1, "message": e.get("message")} for e in events[-EVENTS_SHOWN:]]


def _event_time(event: dict) -> dt.datetime:
    for field in ("lastTimestamp", "eventTime", "firstTimestamp"):
        t = parse_time(event.get(field))
        if t:
            return t
    return parse_time(event.get("metadata", {}).get("creationTimestamp")) or dt.datetime.min.replace(
        tzinfo=dt.UTC)


def render_status(r: dict, style: Style) -> str:
    t = now()
    lines = [f"{style.bold('Certificate')} {r['namespace']}/{r['name']}"]
    add = lines.append
    add("Conditions:")
    for c in r["conditions"] or [{"type": "Ready", "status": "Unknown", "reason": "",
                                  "message": "no status yet: is the operator running?"}]:
        since = parse_time(c.get("lastTransitionTime"))
        when = f" (since {relative(since, t)})" if since else ""
        add(f"  {c['type']:<8} {style.status(c.get('status') or 'Unknown'):<5}  {c.get('reason') or ''}: "
            f"{c.get('message') or ''}{when}")
    if r["lastTrigger"]:
        add(f"Last issuance:  triggered by {r['lastTrigger']}"
            + (f", revision {r['revision']}" if r.get("revision") else ""))
    b = r["backoff"]
    if b:
        add(f"Back-off:       {b['failedAttempts']} failed issuance attempt(s), last "
            f"{relative(parse_time(b['lastFailureTime']), t)}; next attempt "
            f"{relative(parse_time(b['nextAttemptAbout']), t)} at {b['nextAttemptAbout']} "
            "(with the operator's default back-off)")
    if r["renewalTime"]:
        add(f"Renewal:        {r['renewalTime']} ({relative(parse_time(r['renewalTime']), t)})")
    i = r["issuer"]
    ready = style.status(i.get("ready") or "Unknown")
    detail = ": ".join(x for x in (i.get("reason"), i.get("message")) if x)
    add(f"Issuer:         {i['kind']} {i['name']}: Ready {ready}" + (f" ({detail})" if detail else ""))
    s = r["secret"]
    if s is None:
        add("Secret:         none")
    elif "error" in s:
        add(f"Secret:         {s['name']} {style.red(s['error'])}")
    else:
        left = s["daysLeft"]
        left_text = f"{left} days left" if left >= 0 else f"expired {-left} days ago"
        coloured = style.red(left_text) if left < 7 else style.yellow(left_text) if left < 30 else left_text
        add(f"Secret:         {s['name']}")
        add(f"  Subject:      {s['subject'] or '(empty)'}")
        add(f"  Serial:       {s['serial']}")
        add(f"  Not before:   {s['notBefore']}")
        add(f"  Not after:    {s['notAfter']} ({coloured})")
        add(f"  SANs:         {', '.join(s['sans']) or '(none)'}")
        add(f"  Issuer DN:    {s['issuer']}")
    add("Events:" + ("" if r["events"] else "         none"))
    if r["events"]:
        rows = [(e["type"], e["reason"], human_delta(t - seen) if (seen := parse_time(e["lastTimestamp"])) else "",
                 e["message"]) for e in r["events"]]
        add("\n".join("  " + line for line in table(("type", "reason", "age", "message"), rows).splitlines()))
    return "\n".join(lines)


# --- list -------------------------------------------------------------------------------------


def list_certificates(args: argparse.Namespace) -> int:
    from certmint.kube.api import ApiError

    cluster = connect(args)
    path = cluster.path("certificates")
    items: list[dict] = []
    try:
        # Page by page (kubectl's 500), so the API server never builds one huge answer.
        for page, _ in cluster.api.list_pages(path, label_selector=args.selector, limit=args.chunk_size):
            items.extend(page)
    except ApiError as e:
        raise api_error(e, "certificates") from None
    reference = now()
    rows = certificate_rows(items, reference)
    if args.expiring is not None:
        limit = reference + args.expiring
        rows = [r for r in rows if r["notAfter"] is not None and r["notAfter"] <= limit]
    if args.output in ("json", "yaml"):
        chosen = [r["object"] for r in rows]
        print(dump({"apiVersion": "v1", "kind": "List", "items": chosen}, args.output),
              end="" if args.output == "yaml" else "\n")
        return 0
    if not rows:
        where = "any namespace" if cluster.all_namespaces else f"namespace {cluster.namespace}"
        print(f"No certificates found in {where}.", file=sys.stderr)
        return 0
    print(render_list(rows, cluster.all_namespaces, args.output == "wide", Style()))
    return 0


def certificate_rows(items: list[dict], reference: dt.datetime) -> list[dict]:
    """One row per Certificate, soonest expiry first; those without a certificate yet come last."""
    rows = []
    for obj in items:
        meta, spec, st = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        ready = condition(obj, "Ready")
        not_after = parse_time(st.get("notAfter"))
        rows.append({
            "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "ready": ready.get("status", "Unknown"), "reason": ready.get("reason", ""),
            "issuer": issuer_ref_text(spec.get("issuerRef") or {}), "secret": spec.get("secretName", ""),
            "notAfter": not_after, "daysLeft": days_left(not_after, reference),
            "renewal": parse_time(st.get("renewalTime")), "created": parse_time(meta.get("creationTimestamp")),
            "object": obj,
        })
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    rows.sort(key=lambda r: (r["notAfter"] or far, r["namespace"], r["name"]))
    return rows


def render_list(rows: list[dict], all_namespaces: bool, wide: bool, style: Style) -> str:
    headers = (["namespace"] if all_namespaces else []) + ["name", "ready", "issuer", "not after", "days left"]
    if wide:
        headers += ["secret", "renewal", "reason", "age"]
    reference = now()
    out = []
    for r in rows:
        left = r["daysLeft"]
        left_text = "" if left is None else str(left)
        if left is not None:
            left_text = style.red(left_text) if left < 7 else style.yellow(left_text) if left < 30 else left_text
        row = ([r["namespace"]] if all_namespaces else []) + [
            r["name"], style.status(r["ready"]), r["issuer"], rfc3339(r["notAfter"]), left_text]
        if wide:
            row += [r["secret"], rfc3339(r["renewal"]), r["reason"],
                    human_delta(reference - r["created"]) if r["created"] else ""]
        out.append(row)
    return table(headers, out)


# --- renew ------------------------------------------------------------------------------------


def renew(args: argparse.Namespace) -> int:
    from certmint.kube.api import ApiError
    from certmint.policy.types import RENEW

    chosen = sum(map(bool, (args.names, args.all, args.selector)))
    if chosen != 1:
        raise UsageError("give Certificate names, or --all, or -l SELECTOR (one of them)")
    if args.all_namespaces and args.names:
        raise UsageError("-A goes with --all or -l, not with names")
    cluster = connect(args)
    cluster.all_namespaces = args.all_namespaces
    if args.names:
        targets = [_get_certificate(cluster, name) for name in args.names]
    else:
        try:
            targets = cluster.api.list(cluster.path("certificates"), label_selector=args.selector)
        except ApiError as e:
            raise api_error(e, "certificates") from None
        if not targets:
            raise CliError("no certificates matched")
    # Any new value asks for one issuance; a timestamp is new every time and tells when it was asked.
    requested_at = now()
    value = requested_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    before: dict[tuple[str, str], int] = {}
    for obj in targets:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        before[key] = int((obj.get("status") or {}).get("revision") or 0)
        try:
            cluster.api.merge_patch(cluster.path("certificates", key[1], key[0]),
                                    {"metadata": {"annotations": {RENEW: value}}})
        except ApiError as e:
            raise api_error(e, f"certificate {key[1]!r} in namespace {key[0]!r}") from None
        print(f"{RESOURCE}/{key[1]} renewal requested" + (f" (namespace {key[0]})" if cluster.all_namespaces else ""))
    if not args.wait:
        return 0
    return _wait_renewed(cluster, before, requested_at, args.timeout)


def _wait_renewed(cluster: Cluster, before: dict[tuple[str, str], int], requested_at: dt.datetime,
                  timeout: dt.timedelta) -> int:
    """Poll until each Certificate has a revision past the one it had and is Ready, or fails."""
    pending, failed = dict(before), 0
    deadline = time.monotonic() + timeout.total_seconds()
    while pending:
        for (namespace, name), revision in list(pending.items()):
            obj = _get_certificate(cluster, name, namespace)
            st = obj.get("status") or {}
            ready = condition(obj, "Ready")
            new_revision = int(st.get("revision") or 0)
            failure = parse_time(st.get("lastFailureTime"))
            if new_revision > revision and ready.get("status") == "True":
                print(f"{RESOURCE}/{name} renewed: revision {new_revision}, not after {st.get('notAfter')}")
                del pending[(namespace, name)]
            elif failure is not None and failure >= requested_at.replace(microsecond=0):
                print(f"error: {RESOURCE}/{name} renewal failed: {ready.get('reason')}: {ready.get('message')}",
                      file=sys.stderr)
                failed += 1
                del pending[(namespace, name)]
        if pending and time.monotonic() > deadline:
            for namespace, name in pending:
                print(f"error: timed out after {human_delta(timeout)} waiting for {RESOURCE}/{name} "
                      f"in {namespace} to be renewed", file=sys.stderr)
            return FAILED
        if pending:
            time.sleep(0.5)
    return FAILED if failed else 0
