"""`check api`: is the certmint API usable on this cluster? Like `cmctl check api`: the CRDs are
installed and Established, and the API server validates a Certificate with certmint's rules."""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from certmint.cli.common import (
    FAILED,
    api_error,
    connect,
    duration,
    human_delta,
    kube_flags,
)

CRDS = ("certificates.certmint.io", "issuers.certmint.io", "clusterissuers.certmint.io")
PROBE = "certmint-check-api"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check that the certmint API is installed and working")
    checks = p.add_subparsers(dest="check", required=True, metavar="CHECK")
    api = checks.add_parser("api", help="the CRDs are Established and validation works (server-side dry run)",
                            description="Checks that the certmint CRDs are installed and Established, that a valid "
                                        "Certificate passes validation and an invalid one is rejected, with a "
                                        "server-side dry run (nothing is created). Exit 1 when not ready.")
    api.add_argument("--wait", type=duration, default=dt.timedelta(0), metavar="DURATION",
                     help="keep checking until ready or DURATION has passed (e.g. 2m)")
    kube_flags(api)
    api.set_defaults(handler=check_api)


def check_api(args: argparse.Namespace) -> int:
    cluster = connect(args)
    deadline = time.monotonic() + args.wait.total_seconds()
    while True:
        problem = api_problem(cluster)
        if problem is None:
            print(f"The certmint API is ready: {', '.join(CRDS)} Established; a valid Certificate passes and an "
                  f"invalid one is rejected (server-side dry run in namespace {cluster.namespace}).")
            return 0
        if time.monotonic() >= deadline:
            waited = f" after waiting {human_delta(args.wait)}" if args.wait else ""
            print(f"error: the certmint API is not ready{waited}: {problem}", file=sys.stderr)
            return FAILED
        time.sleep(1)


def api_problem(cluster) -> str | None:
    """What is wrong with the certmint API, or None when all is well."""
    from certmint.kube.api import ApiError

    for crd in CRDS:
        try:
            obj = cluster.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
        except ApiError as e:
            if e.not_found:
                return f"CRD {crd} is not installed (kubectl apply -f crds/, or install the chart)"
            return str(api_error(e, f"CRD {crd}"))
        established: dict = next((c for c in (obj.get("status") or {}).get("conditions") or []
                            if c.get("type") == "Established"), {})
        if established.get("status") != "True":
            return f"CRD {crd} is not Established yet ({established.get('message') or 'no condition'})"
    try:
        cluster.api.request("create", "POST", cluster.path("certificates"), body=_certificate("1h"),
                            query=[("dryRun", "All")])
    except ApiError as e:
        if e.status == 404 and "namespace" in e.message.lower():
            return f"namespace {cluster.namespace} does not exist"
        if e.status in (0, 401, 403):
            return str(api_error(e))
        return f"a valid Certificate was rejected: {e.message}"
    try:
        # Below the 1h minimum: certmint's schema rules must refuse it, or validation is not in place.
        cluster.api.request("create", "POST", cluster.path("certificates"), body=_certificate("30m"),
                            query=[("dryRun", "All")])
    except ApiError as e:
        if e.status == 422:
            return None
        return str(api_error(e, "dry run of a Certificate"))
    return "an invalid Certificate (duration 30m, below the 1h minimum) was accepted: validation rules are missing"


def _certificate(duration_text: str) -> dict:
    return {"apiVersion": "certmint.io/v1", "kind": "Certificate",
            "metadata": {"name": PROBE},
            "spec": {"secretName": PROBE, "commonName": "check.certmint.io", "duration": duration_text,
                     "issuerRef": {"name": PROBE}}}

