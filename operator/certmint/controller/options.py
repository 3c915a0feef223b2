"""The operator's settings, as given on the command line."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    cluster_resource_namespace: str = "certmint"
    metrics_port: int = 9402
    metrics_host: str = "0.0.0.0"
    workers: int = 8
    backoff_initial: dt.timedelta = dt.timedelta(seconds=10)
    backoff_max: dt.timedelta = dt.timedelta(hours=1)
    # CA Secrets that certmint did not issue are not watched; their issuers re-read them this often.
    issuer_recheck: dt.timedelta = dt.timedelta(minutes=5)
    # A reconcile that failed on an API error is retried after milliseconds, doubling up to this.
    retry_max: float = 30.0
    # Each watched scope is listed again this often, so an object deleted while a watch was down
    # is forgotten even when no later listing of its scope showed it missing.
    resync_period: dt.timedelta = dt.timedelta(minutes=10)
    # CA rotation (docs/ca-rotation.md): certificates signed by a previous key of their CA are re-issued
    # over this window, each at a stable offset, instead of all at once.
    rotation_spread: dt.timedelta = dt.timedelta(minutes=5)
    # How long a Bundle's new content takes to reach every pod: the kubelet syncs mounted ConfigMaps and
    # Secrets on its sync period (1 min by default) plus its cache TTL. Certificates from a new root wait
    # this long after every following Bundle holds it, and a retired root stays this long.
    trust_propagation: dt.timedelta = dt.timedelta(minutes=2)
    # Events are posted in the background at most this many a second (with a burst saved up), so a
    # storm of issuances does not double the API server's work while it lasts.
    event_qps: float = 50.0
    event_burst: int = 200
    leader_election: bool = False
    leader_election_namespace: str = "certmint"
    leader_election_id: str = "certmint-operator"
