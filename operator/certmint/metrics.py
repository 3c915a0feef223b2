"""Prometheus metrics under cert-manager's names, so existing alert rules and dashboards keep working.

Per-object series are set from each reconcile's outcome and removed with the object;
nothing is labelled per issuance, so cardinality stays a fixed number of series per object.
"""
from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import UnknownMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from certmint.revocation import CRL_CONTENT_TYPE

CONDITIONS = ("True", "False", "Unknown")
disable_created_metrics()  # *_created series double every counter for no alerting value
CERT_LABELS = ("name", "namespace", "issuer_name", "issuer_kind", "issuer_group")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.certificates = CertificateSeries()  # written by exposition(), not through the registry
        self.issuer_ready = Gauge("certmanager_issuer_ready_status", "The Ready condition of the issuer.",
                                  ("name", "namespace", "condition"), registry=r)
        self.clusterissuer_ready = Gauge("certmanager_clusterissuer_ready_status",
                                         "The Ready condition of the cluster issuer.", ("name", "condition"),
                                         registry=r)
        self.sync_calls = UnsuffixedCounter("certmanager_controller_sync_call_count", "Reconciles by controller.",
                                            "controller", r)
        self.sync_errors = UnsuffixedCounter("certmanager_controller_sync_error_count",
                                             "Failed reconciles by controller.", "controller", r)
        self.issuance_seconds = Histogram("certmint_issuance_duration_seconds",
                                          "Time to issue one certificate (key, signature, Secret write).",
                                          ("key_algorithm",), registry=r,
                                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.issuances = Counter("certmint_issuances", "Issuances by trigger reason.", ("reason",), registry=r)
        self.issuance_failures = Counter("certmint_issuance_failures", "Failed issuances by reason.",
                                         ("reason",), registry=r)
        self.ca_expiration = Gauge("certmint_issuer_ca_expiration_timestamp_seconds",
                                   "notAfter of the issuer's CA certificate (Unix time).",
                                   ("kind", "namespace", "name"), registry=r)
        self.api_requests = Counter("certmint_api_requests", "Kubernetes API requests by verb.", ("verb",),
                                    registry=r)
        self.events_pending = Gauge("certmint_events_pending", "Events recorded and not posted yet "
                                    "(they are posted at --event-qps).", registry=r)
        self.events_dropped = Counter("certmint_events_dropped", "Events dropped because the backlog of "
                                      "events not yet posted was full.", registry=r)
        crl = ("issuer_name", "issuer_kind", "namespace")  # namespace "" for a ClusterIssuer
        self.crl_revoked = Gauge("certmint_revoked_certificates",
                                 "Unexpired revoked certificates on the issuer's published CRL.", crl, registry=r)
        self.crl_next_update = Gauge("certmint_crl_next_update_timestamp_seconds",
                                     "nextUpdate of the issuer's published CRL (Unix time).", crl, registry=r)
        # The work queue, under client-go's names (label name="certmint"), so the dashboards
        # and alerts written for Go controllers show a stuck or backed-up certmint too.
        q = (QUEUE_NAME,)
        self.queue_adds = Counter("workqueue_adds", "Keys added to the work queue.", ("name",),
                                  registry=r).labels(*q)
        self.queue_retries = Counter("workqueue_retries", "Keys re-added after a failed reconcile.", ("name",),
                                     registry=r).labels(*q)
        self.queue_latency = Histogram("workqueue_queue_duration_seconds",
                                       "How long a key waited in the queue before a worker took it.", ("name",),
                                       registry=r, buckets=QUEUE_BUCKETS).labels(*q)
        self.work_duration = Histogram("workqueue_work_duration_seconds", "How long one reconcile took.",
                                       ("name",), registry=r, buckets=QUEUE_BUCKETS).labels(*q)
        self.queue_depth = Gauge("workqueue_depth", "Keys waiting for a worker.", ("name",), registry=r).labels(*q)
        self.queue_unfinished = Gauge("workqueue_unfinished_work_seconds",
                                      "Seconds of work in progress that has not finished (summed over workers).",
                                      ("name",), registry=r).labels(*q)
        self.queue_longest = Gauge("workqueue_longest_running_processor_seconds",
                                   "How long the longest-running reconcile has been running.", ("name",),
                                   registry=r).labels(*q)

    def set_crl(self, issuer_name: str, issuer_kind: str, namespace: str, revoked: int,
                next_update: dt.datetime) -> None:
        self.crl_revoked.labels(issuer_name, issuer_kind, namespace).set(revoked)
        self.crl_next_update.labels(issuer_name, issuer_kind, namespace).set(next_update.timestamp())

    def forget_crl(self, issuer_name: str, issuer_kind: str, namespace: str) -> None:
        _remove(self.crl_revoked, (issuer_name, issuer_kind, namespace))
        _remove(self.crl_next_update, (issuer_name, issuer_kind, namespace))

    def queue_observer(self) -> "QueueMetrics":
        return QueueMetrics(self)

    def watch_queue(self, stats: Callable[[], Any]) -> None:
        """Depth and work in progress are read from the queue at scrape time."""
        self.queue_depth.set_function(lambda: stats().depth)
        self.queue_unfinished.set_function(lambda: stats().unfinished_seconds)
        self.queue_longest.set_function(lambda: stats().longest_running_seconds)

    def watch_events(self, pending: Callable[[], int]) -> None:
        self.events_pending.set_function(pending)

    def set_certificate(self, namespace: str, name: str, issuer: tuple[str, str, str], ready: str,
                        not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                        renewal: dt.datetime | None = None) -> None:
        """The series of one certificate; a missing date (no usable certificate) has no series."""
        self.certificates.set(namespace, name, issuer, ready, not_before, not_after, renewal)

    def forget_certificate(self, namespace: str, name: str) -> None:
        self.certificates.forget(namespace, name)

    def exposition(self) -> Iterator[bytes]:
        """Everything a scrape returns, in chunks."""
        yield generate_latest(self.registry)
        yield from self.certificates.exposition()

    def text(self) -> str:
        return b"".join(self.exposition()).decode()

    def set_issuer(self, kind: str, namespace: str, name: str, ready: str,
                   ca_not_after: dt.datetime | None) -> None:
        for condition in CONDITIONS:
            value = 1 if condition == ready else 0
            if kind == "ClusterIssuer":
                self.clusterissuer_ready.labels(name, condition).set(value)
            else:
                self.issuer_ready.labels(name, namespace, condition).set(value)
        if ca_not_after is not None:
            self.ca_expiration.labels(kind, namespace, name).set(ca_not_after.timestamp())
        else:
            _remove(self.ca_expiration, (kind, namespace, name))

    def forget_issuer(self, kind: str, namespace: str, name: str) -> None:
        for condition in CONDITIONS:
            if kind == "ClusterIssuer":
                _remove(self.clusterissuer_ready, (name, condition))
            else:
                _remove(self.issuer_ready, (name, namespace, condition))
        _remove(self.ca_expiration, (kind, namespace, name))


QUEUE_NAME = "certmint"
QUEUE_BUCKETS = (.0001, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 60)


class QueueMetrics:
    """The work queue's observer (see controller.queue.QueueObserver)."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def added(self) -> None:
        self.m.queue_adds.inc()

    def started(self, waited_seconds: float) -> None:
        self.m.queue_latency.observe(waited_seconds)

    def finished(self, worked_seconds: float) -> None:
        self.m.work_duration.observe(worked_seconds)

    def retried(self) -> None:
        self.m.queue_retries.inc()


def _stamp(t: dt.datetime | None) -> float | None:
    return t.timestamp() if t is not None else None


class CertificateSeries:
    """The per-certificate gauges, kept as one small record per certificate and written straight
    to the scrape response.

    A prometheus_client Gauge child per series costs about 5 KB per certificate for the seven
    series, and even a collector's samples (a dict of labels each) cost tens of megabytes per
    scrape with ten thousand certificates. A record with its label text made once costs a few
    hundred bytes, and the exposition is written in chunks from the records.
    """

    DATES = (
        ("certmanager_certificate_expiration_timestamp_seconds",
         "The date after which the certificate expires (Unix time).", 3),
        ("certmanager_certificate_not_after_timestamp_seconds", "The certificate's notAfter (Unix time).", 3),
        ("certmanager_certificate_not_before_timestamp_seconds", "The certificate's notBefore (Unix time).", 2),
        ("certmanager_certificate_renewal_timestamp_seconds",
         "When the certificate will be renewed (Unix time).", 4),
    )
    READY = ("certmanager_certificate_ready_status", "The Ready condition of the certificate: 1 for the current value.")
    NAMES = tuple(d[0] for d in DATES) + (READY[0],)
    CHUNK = 2000  # lines per write

    def __init__(self) -> None:
        # (namespace, name) -> (label text, ready condition, notBefore, notAfter, renewal)
        self._records: dict[tuple[str, str], tuple] = {}
        self._lock = threading.Lock()

    def set(self, namespace: str, name: str, issuer: tuple[str, str, str], ready: str,
            not_before: dt.datetime | None, not_after: dt.datetime | None, renewal: dt.datetime | None) -> None:
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in zip(CERT_LABELS, (name, namespace) + tuple(issuer), strict=True))
        record = (labels, ready, _stamp(not_before), _stamp(not_after), _stamp(renewal))
        with self._lock:
            self._records[(namespace, name)] = record

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._records.pop((namespace, name), None)

    def exposition(self) -> Iterator[bytes]:
        """The five families in Prometheus' text format, a chunk at a time."""
        with self._lock:
            records = list(self._records.values())
        for metric, documentation, field in self.DATES:
            yield f"# HELP {metric} {documentation}\n# TYPE {metric} gauge\n".encode()
            yield from _chunks(f"{metric}{{{r[0]}}} {floatToGoString(r[field])}\n"
                               for r in records if r[field] is not None)
        metric, documentation = self.READY
        yield f"# HELP {metric} {documentation}\n# TYPE {metric} gauge\n".encode()
        yield from _chunks(f'{metric}{{{r[0]},condition="{c}"}} {"1.0" if r[1] == c else "0.0"}\n'
                           for r in records for c in CONDITIONS)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _chunks(lines: Iterable[str]) -> Iterator[bytes]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= CertificateSeries.CHUNK:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


class UnsuffixedCounter:
    """A counter exposed under its exact name, as cert-manager's Go client does.

    prometheus_client always appends _total to counters; cert-manager's controller counters
    have no suffix, and dashboards query them by that name, so these are exposed untyped.
    """

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry):
        self.name, self.documentation, self.label = name, documentation, label
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, value: str) -> "UnsuffixedCounter._Child":
        return UnsuffixedCounter._Child(self, value)

    class _Child:
        def __init__(self, parent: "UnsuffixedCounter", value: str):
            self.parent, self.value = parent, value

        def inc(self, amount: float = 1.0) -> None:
            with self.parent._lock:
                self.parent._values[self.value] = self.parent._values.get(self.value, 0.0) + amount

    def collect(self):
        family = UnknownMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            for value, count in sorted(self._values.items()):
                family.add_metric([value], count)
        yield family


def _remove(metric, labels: tuple[str, ...]) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass


def serve(metrics: Metrics, port: int, ready: Callable[[], bool], host: str = "0.0.0.0",
          crls: Callable[[str], bytes | None] | None = None) -> ThreadingHTTPServer:
    """/metrics, /healthz and /readyz on one port, in a daemon thread; and the CA issuers' CRLs
    under /crls/ (DER), where TLS stacks that follow a CRL Distribution Point fetch them."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self.send_response(200)  # HTTP/1.0: the body ends when the connection closes
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.end_headers()
                for chunk in metrics.exposition():
                    self.wfile.write(chunk)
            elif path == "/healthz":
                self._reply(200, b"ok")
            elif path == "/readyz":
                ok = ready()
                self._reply(200 if ok else 503, b"ok" if ok else b"not ready")
            elif path.startswith("/crls/") and crls is not None:
                der = crls(path)
                if der is None:
                    self._reply(404, b"no such CRL")
                else:
                    self._reply(200, der, CRL_CONTENT_TYPE)
            else:
                self._reply(404, b"not found")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # scrapes are not worth a log line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
