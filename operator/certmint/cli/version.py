"""`version`: this client's version, and the operator's when it can be found.

The operator's version comes from its Deployment (the chart's `app.kubernetes.io/version` label,
else the image tag): the Deployment is what an upgrade changes, and reading it needs no network
path to the pod, unlike its metrics port.
"""
from __future__ import annotations

import argparse
import sys

from certmint.cli.common import (
    FAILED,
    CliError,
    api_error,
    connect,
    dump,
    kube_flags,
    output_flag,
)

OPERATOR_SELECTOR = "app.kubernetes.io/part-of=certmint,app.kubernetes.io/component=controller"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="client and operator versions")
    p.add_argument("--client", action="store_true", help="only the client's version (no cluster needed)")
    kube_flags(p)
    output_flag(p, choices=("text", "json", "yaml"), default="text")
    p.set_defaults(handler=version)


def client_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("certmint")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def image_tag(image: str) -> str | None:
    """The tag of an image reference (registry:port/repo:tag@digest), None when it has none."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def operator_deployments(deployments: list[dict]) -> list[dict]:
    found = []
    for d in deployments:
        meta = d.get("metadata") or {}
        containers = (((d.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        image = containers[0].get("image", "") if containers else ""
        found.append({"namespace": meta.get("namespace"), "name": meta.get("name"), "image": image,
                      "version": (meta.get("labels") or {}).get("app.kubernetes.io/version") or image_tag(image)})
    return found


def version(args: argparse.Namespace) -> int:
    report: dict = {"client": client_version()}
    code = 0
    if not args.client:
        try:
            report.update(_server(args))
        except CliError as e:
            report["error"] = str(e)
            code = FAILED
    if args.output in ("json", "yaml"):
        print(dump(report, args.output), end="" if args.output == "yaml" else "\n")
    else:
        print(f"Client:     {report['client']}")
        if "kubernetes" in report:
            print(f"Kubernetes: {report['kubernetes']}")
        if "operators" in report:
            if not report["operators"]:
                print(f"Operator:   not found (no Deployment labelled {OPERATOR_SELECTOR})")
            for op in report["operators"]:
                print(f"Operator:   {op['version'] or 'unknown'} (deployment {op['namespace']}/{op['name']}, "
                      f"image {op['image']})")
        elif "operatorError" in report:
            print(f"Operator:   unknown ({report['operatorError']})")
    if "error" in report:
        print(f"error: {report['error']}", file=sys.stderr)
    return code


def _server(args: argparse.Namespace) -> dict:
    from certmint.kube.api import ApiError

    cluster = connect(args)
    out: dict = {}
    try:
        out["kubernetes"] = cluster.api.get("/version").get("gitVersion")
    except ApiError as e:
        raise api_error(e) from None
    namespace = getattr(args, "namespace", None)
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments" if namespace else "/apis/apps/v1/deployments"
    try:
        out["operators"] = operator_deployments(cluster.api.list(path, label_selector=OPERATOR_SELECTOR))
    except ApiError as e:  # e.g. not allowed to list Deployments: the client version still stands
        out["operatorError"] = str(api_error(e))
    return out
