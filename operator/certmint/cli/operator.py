"""`certmint operator`: run the operator."""
from __future__ import annotations

import argparse
import datetime as dt
import os


def _duration(text: str) -> dt.timedelta:
    # Imported here, not at the top: certmint.model pulls in cryptography, which `certmint --help`
    # and the commands that never parse a duration should not pay for.
    from certmint.model.duration import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _default_namespace() -> str:
    """The namespace the operator runs in (in a pod), else 'certmint'."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return os.environ.get("POD_NAMESPACE", "certmint")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    op = sub.add_parser("operator", help="run the operator")
    op.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    op.add_argument("--namespace", action="append", default=[], dest="namespaces",
                    help="watch only this namespace (repeatable; default: all namespaces)")
    op.add_argument("--cluster-resource-namespace", default=None,
                    help="where ClusterIssuers read their CA Secrets (default: the operator's own namespace)")
    op.add_argument("--metrics-port", type=int, default=9402, help="port for /metrics, /healthz, /readyz")
    op.add_argument("--metrics-host", default="0.0.0.0", help="address to serve metrics on")
    op.add_argument("--workers", type=int, default=8, help="certificates reconciled in parallel")
    op.add_argument("--backoff-initial", type=_duration, default=dt.timedelta(seconds=10),
                    help="first retry delay after a failed issuance (Go duration, default 10s)")
    op.add_argument("--backoff-max", type=_duration, default=dt.timedelta(hours=1),
                    help="longest retry delay (Go duration, default 1h)")
    op.add_argument("--issuer-recheck", type=_duration, default=dt.timedelta(minutes=5),
                    help="how often CA issuers re-read CA Secrets certmint did not issue (default 5m)")
    op.add_argument("--rotation-spread", type=_duration, default=dt.timedelta(minutes=5),
                    help="after a CA gets a new key, re-issue the certificates it signed over this window "
                         "(Go duration, default 5m)")
    op.add_argument("--trust-propagation-delay", type=_duration, default=dt.timedelta(minutes=2),
                    help="how long a new trust bundle takes to reach every pod (kubelet sync); certificates from "
                         "a new root wait this long after the bundles hold it (Go duration, default 2m)")
    op.add_argument("--retry-max", type=_duration, default=dt.timedelta(seconds=30),
                    help="a reconcile that failed on an API error is retried after milliseconds, doubling up to "
                         "this (Go duration, default 30s)")
    op.add_argument("--resync-period", type=_duration, default=dt.timedelta(minutes=10),
                    help="list every watched scope again this often, to forget objects deleted while a watch "
                         "was down (Go duration, default 10m)")
    op.add_argument("--event-qps", type=float, default=50.0,
                    help="post at most this many Events a second; the rest follow at that pace (default 50)")
    op.add_argument("--event-burst", type=int, default=200,
                    help="Events that may be posted at once before --event-qps applies (default 200)")
    op.add_argument("--leader-elect", action="store_true",
                    help="elect a leader on a Lease, so only one replica reconciles (for replicas > 1)")
    op.add_argument("--leader-election-namespace", default=None,
                    help="namespace of the Lease (default: the operator's own namespace)")
    op.add_argument("--leader-election-id", default="certmint-operator", help="name of the Lease")
    op.add_argument("--log-format", choices=["text", "json"], default="text")
    op.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                    type=str.upper)
    op.set_defaults(handler=start)
    return op


def start(args: argparse.Namespace) -> int:
    from certmint import logs
    from certmint.controller.operator import run
    from certmint.controller.options import Options

    logs.configure(args.log_format, args.log_level)
    run(Options(
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespaces),
        cluster_resource_namespace=args.cluster_resource_namespace or _default_namespace(),
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        workers=args.workers,
        backoff_initial=args.backoff_initial,
        backoff_max=args.backoff_max,
        issuer_recheck=args.issuer_recheck,
        retry_max=args.retry_max.total_seconds(),
        resync_period=args.resync_period,
        event_qps=args.event_qps,
        event_burst=args.event_burst,
        rotation_spread=args.rotation_spread,
        trust_propagation=args.trust_propagation_delay,
        leader_election=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace or _default_namespace(),
        leader_election_id=args.leader_election_id,
    ))
    return 0
