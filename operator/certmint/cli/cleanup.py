"""`cleanup`: certmint's Secrets that no Certificate writes any more.

The operator keeps a Secret when its Certificate is deleted, on purpose (running workloads may
still mount the key), so these pile up; this is how a person clears them. Listing is the
default; deleting takes --delete and a confirmation.
"""
from __future__ import annotations

import argparse
import sys

from certmint.cli.common import (
    CliError,
    Style,
    UsageError,
    api_error,
    connect,
    dump,
    human_delta,
    kube_flags,
    now,
    output_flag,
    parse_time,
    table,
)

CERTIFICATE_LABEL = "certmint.io/certificate-name"  # set by the operator on every Secret it writes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cleanup", help="list (and with --delete, delete) Secrets whose Certificate is gone",
                       description="Finds Secrets labelled certmint.io/certificate-name whose Certificate no longer "
                                   "exists, or no longer writes that Secret. Only lists them unless --delete is given; "
                                   "deleting asks for confirmation (or --yes).")
    kube_flags(p)
    p.add_argument("-A", "--all-namespaces", action="store_true", help="look in every namespace")
    p.add_argument("--dry-run", action="store_true", help="only list (the default)")
    p.add_argument("--delete", action="store_true", help="delete the Secrets listed, after confirmation")
    p.add_argument("-y", "--yes", action="store_true", help="with --delete: do not ask")
    output_flag(p, choices=("table", "json", "yaml"))
    p.set_defaults(handler=cleanup)


def orphans(secrets: list[dict], certificates: list[dict]) -> list[dict]:
    """The Secrets no Certificate claims, each with why."""
    writes = {(c["metadata"]["namespace"], c["metadata"]["name"]): (c.get("spec") or {}).get("secretName")
              for c in certificates}
    found = []
    for secret in secrets:
        meta = secret["metadata"]
        owner = (meta.get("labels") or {}).get(CERTIFICATE_LABEL, "")
        key = (meta["namespace"], owner)
        if key not in writes:
            reason = f"Certificate {owner} does not exist"
        elif writes[key] != meta["name"]:
            reason = f"Certificate {owner} now writes Secret {writes[key]}"
        else:
            continue
        found.append({"namespace": meta["namespace"], "name": meta["name"], "certificate": owner, "reason": reason,
                      "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
                      "created": meta.get("creationTimestamp")})
    return sorted(found, key=lambda o: (o["namespace"], o["name"]))


def cleanup(args: argparse.Namespace) -> int:
    from certmint.kube.api import ApiError

    if args.dry_run and args.delete:
        raise UsageError("--dry-run and --delete exclude each other")
    if args.yes and not args.delete:
        raise UsageError("--yes only goes with --delete")
    cluster = connect(args)
    cluster.all_namespaces = args.all_namespaces
    try:
        secrets = cluster.api.list(cluster.path("secrets", group=""), label_selector=CERTIFICATE_LABEL)
        certificates = cluster.api.list(cluster.path("certificates"))
    except ApiError as e:
        raise api_error(e) from None
    found = orphans(secrets, certificates)
    if args.output in ("json", "yaml"):
        shown = [{k: o[k] for k in ("namespace", "name", "certificate", "reason")} for o in found]
        print(dump(shown, args.output), end="" if args.output == "yaml" else "\n")
    elif found:
        t = now()
        print(table(("namespace", "secret", "certificate", "reason", "age"),
                    [(o["namespace"], o["name"], o["certificate"], o["reason"],
                      human_delta(t - created) if (created := parse_time(o["created"])) else "")
                     for o in found]))
    else:
        where = "any namespace" if cluster.all_namespaces else f"namespace {cluster.namespace}"
        print(f"No orphaned certmint Secrets in {where}.", file=sys.stderr)
    if not args.delete or not found:
        if found and not args.delete:
            print(f"{len(found)} Secret(s) would be deleted; run again with --delete to delete them.", file=sys.stderr)
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("refusing to delete without confirmation: add --yes")
        answer = input(f"Delete these {len(found)} Secret(s)? Workloads that mount them lose their key. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("Nothing deleted.", file=sys.stderr)
            return 0
    style, failures = Style(), 0
    for o in found:
        # Preconditions: delete only the Secret that was listed, not one re-created or changed since.
        body = {"preconditions": {"uid": o["uid"], "resourceVersion": o["resourceVersion"]}}
        try:
            cluster.api.request("delete", "DELETE", cluster.path("secrets", o["name"], o["namespace"], group=""),
                                body=body)
        except ApiError as e:
            print(f"error: secret {o['namespace']}/{o['name']}: {api_error(e)}", file=sys.stderr)
            failures += 1
            continue
        print(f"secret/{o['name']} {style.red('deleted')}" + (f" (namespace {o['namespace']})"
                                                             if cluster.all_namespaces else ""))
    if failures:
        raise CliError(f"{failures} Secret(s) not deleted")
    return 0
