"""The benchmark's side of the cluster: a control plane of its own, kubectl, the operator process,
a watch of Certificates, and a tight asyncio client for bulk requests."""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from bench import stats
import localcluster

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "crds"
OPERATOR_NAMESPACE = "certmint-system"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark could not run (not: a figure missed its target)."""


# --- processes -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its live descendants: the operator makes RSA keys in child
    processes, and their work is the operator's."""
    with open(f"/proc/{pid}/stat") as f:
        own = stats.cpu_ticks(f.read()) / CLK_TCK
    return own + sum(cpu_seconds(child) for child in children(pid))


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as f:
                    if stats.parent_pid(f.read()) == pid:
                        found.append(int(entry))
    return found


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since the process started), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    return {"rss_mib": stats.status_kib(text, "VmRSS") / 1024, "hwm_mib": stats.status_kib(text, "VmHWM") / 1024}


class CpuMeter:
    """CPU time of several processes (and this one) over a window, in cores (CPU seconds per second)."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.start()

    def _read(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                out[name] = cpu_seconds(pid)
        t = os.times()
        out["bench"] = t.user + t.system
        return out

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), self._read()

    def used(self) -> dict[str, float]:
        """CPU seconds of each process since start()."""
        now = self._read()
        return {k: now[k] - self.c0[k] for k in now if k in self.c0}

    def cores(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.t0
        return {k: v / elapsed for k, v in self.used().items()}


# --- the control plane -------------------------------------------------------------------------------


@dataclass
class ControlPlane:
    cluster: localcluster.Cluster

    @classmethod
    def start(cls, directory: Path) -> "ControlPlane":
        started = time.monotonic()
        cp = cls(localcluster.start(directory, tie_to_parent=True))
        try:
            cp.kubectl("apply", "--server-side", "-f", str(CRDS))
            cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
            cp.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        except BaseException:
            cp.stop()
            raise
        progress(f"control plane up at {cp.cluster.server} ({time.monotonic() - started:.1f} s)")
        return cp

    def stop(self) -> None:
        self.cluster.stop()

    @property
    def pids(self) -> dict[str, int]:
        etcd, apiserver = self.cluster.pids
        return {"etcd": etcd, "apiserver": apiserver}

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 600) -> str:
        result = subprocess.run([localcluster.binary("kubectl"), *args], input=input, capture_output=True,
                                text=True, env=self.cluster.env(), timeout=timeout)
        if result.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args)[:200]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result.stdout

    def apply_file(self, path: Path) -> float:
        """One `kubectl apply --server-side` of a multi-document file; returns its duration."""
        started = time.monotonic()
        self.kubectl("apply", "--server-side", "-f", str(path), timeout=3600)
        return time.monotonic() - started

    def create_namespace(self, name: str) -> None:
        self.kubectl("create", "namespace", name)

    def metrics(self) -> str:
        return self.cluster.get("/metrics", timeout=30)

    def request_counts(self) -> Counter:
        return stats.request_counts(self.metrics())

    def ssl_context(self) -> ssl.SSLContext:
        return self.cluster.ssl_context()

    @property
    def host_port(self) -> tuple[str, int]:
        u = urllib.parse.urlsplit(self.cluster.server)
        return u.hostname or "127.0.0.1", u.port or 443

    def get_json(self, path: str) -> dict:
        return json.loads(self.cluster.get(path, timeout=60))


# --- the operator ------------------------------------------------------------------------------------


@dataclass
class Operator:
    proc: subprocess.Popen
    url: str
    log: Path
    started: float  # time.monotonic() just before the process was spawned

    @classmethod
    def start(cls, cp: ControlPlane, log: Path, *extra: str, wait_ready: bool = True) -> "Operator":
        """`certmint operator` as a user runs it, against cp; extra flags e.g. --namespace."""
        port = localcluster.free_port()
        args = [sys.executable, "-m", "certmint.cli", "operator", "--kubeconfig", str(cp.cluster.kubeconfig),
                "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
                "--cluster-resource-namespace", OPERATOR_NAMESPACE, "--log-level", "WARNING", *extra]
        with open(log, "ab") as out:
            started = time.monotonic()
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**cp.cluster.env(), "PYTHONUNBUFFERED": "1"},
                                    preexec_fn=localcluster._die_with_parent)
        op = cls(proc, f"http://127.0.0.1:{port}", log, started)
        if wait_ready:
            op.wait_ready()
        return op

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"the operator exited with {self.proc.returncode}; log tail:\n"
                             f"{self.log.read_text(errors='replace')[-4000:]}")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"the operator was not ready within {timeout:.0f} s")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        return stats.metric_sum(self.metrics(), name, **labels)

    def wait_events_posted(self, timeout: float = 300, required: bool = True) -> bool:
        """Until the operator has posted every Event it recorded (it posts them at --event-qps, so they
        trail a burst of issuances), then until it is quiet. False if some were still pending at the
        timeout and not required."""
        deadline = time.monotonic() + timeout
        while self.metric("certmint_events_pending") > 0:
            self.check_alive()
            if time.monotonic() > deadline:
                if required:
                    raise BenchError(f"the operator still had events to post {timeout:.0f} s later")
                return False
            time.sleep(0.5)
        self.wait_quiet()
        return True

    def requests_by_verb(self) -> dict[str, float]:
        return {ls.get("verb", ""): v for ls, v in stats.samples(self.metrics(), "certmint_api_requests_total")}

    def memory(self) -> dict[str, float]:
        return memory_mib(self.pid)

    def wait_quiet(self, quiet: float = 1.5, timeout: float = 120, threshold: float = 0.03) -> bool:
        """Until the operator has used less than `threshold` of a core for `quiet` seconds.

        Judged from /proc, not from /metrics: a scrape of tens of thousands of series costs the
        operator CPU and memory of its own, which would disturb what is being measured."""
        deadline = time.monotonic() + timeout
        history: list[tuple[float, float]] = []
        while time.monotonic() < deadline:
            self.check_alive()
            now, cpu = time.monotonic(), cpu_seconds(self.pid)
            history.append((now, cpu))
            old = [h for h in history if now - h[0] >= quiet]
            if old and (cpu - old[-1][1]) / (now - old[-1][0]) < threshold:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --- a watch of Certificates -------------------------------------------------------------------------


@dataclass
class CertRecord:
    ready_at: float | None = None  # time.time() when first seen Ready=True
    revision: int = 0  # latest revision seen Ready
    revision_at: dict[int, float] = field(default_factory=dict)  # revision -> time.time() first seen Ready
    renewal_time: dict[int, str] = field(default_factory=dict)  # revision -> status.renewalTime


def _is_ready(obj: dict) -> bool:
    generation = obj.get("metadata", {}).get("generation")
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True" and c.get("observedGeneration", generation) == generation
    return False


class CertificateWatch:
    """List-then-watch of the Certificates of one namespace, in a thread, recording when each one
    first turned Ready and reached each revision. The requests it makes are counted, so a window
    that contains one of them can subtract it."""

    def __init__(self, cp: ControlPlane, namespace: str, prefix: str = "c"):
        self.cp, self.namespace, self.prefix = cp, namespace, prefix
        self.path = f"/apis/certmint.io/v1/namespaces/{namespace}/certificates"
        self.records: dict[str, CertRecord] = {}
        self.requests: Counter = Counter()  # (VERB, resource)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._conn: http.client.HTTPSConnection | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)

    def __enter__(self) -> "CertificateWatch":
        self._thread.start()
        if not self._synced.wait(120):
            raise BenchError(f"could not list certificates in {self.namespace}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.sock.shutdown(2)  # type: ignore[union-attr]
        self._thread.join(10)

    def _see(self, obj: dict) -> None:
        name = obj.get("metadata", {}).get("name", "")
        if not name.startswith(self.prefix) or not _is_ready(obj):
            return
        status = obj.get("status") or {}
        revision = int(status.get("revision") or 0)
        now = time.time()
        with self._lock:
            rec = self.records.setdefault(name, CertRecord())
            if rec.ready_at is None:
                rec.ready_at = now
            if revision not in rec.revision_at:
                rec.revision_at[revision] = now
                rec.renewal_time[revision] = status.get("renewalTime", "")
            rec.revision = max(rec.revision, revision)

    def _connect(self) -> http.client.HTTPSConnection:
        host, port = self.cp.host_port
        return http.client.HTTPSConnection(host, port, context=self.cp.ssl_context(), timeout=3700)

    def _list(self) -> str:
        conn = self._connect()
        try:
            conn.request("GET", self.path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise BenchError(f"LIST {self.path}: {resp.status} {body[:300]!r}")
            self.requests[("LIST", "certificates")] += 1
        finally:
            conn.close()
        data = json.loads(body)
        for item in data.get("items") or []:
            self._see(item)
        return data["metadata"]["resourceVersion"]

    def _watch(self, version: str) -> None:
        query = urllib.parse.urlencode({"watch": "true", "resourceVersion": version,
                                        "allowWatchBookmarks": "true", "timeoutSeconds": 3600})
        conn = self._connect()
        self._conn = conn
        try:
            conn.request("GET", f"{self.path}?{query}", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            self.requests[("WATCH", "certificates")] += 1
            if resp.status != 200:
                raise BenchError(f"WATCH {self.path}: {resp.status}")
            for line in resp:
                if self._stop.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    return  # too old: relist
                if event.get("type") in ("ADDED", "MODIFIED"):
                    self._see(event.get("object") or {})
        finally:
            self._conn = None
            conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._list()
                self._synced.set()
                self._watch(version)
            except Exception as e:  # noqa: BLE001 - reported to the waiter
                if self._stop.is_set():
                    return
                self._error = e
                time.sleep(1)

    # --- reads -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, CertRecord]:
        with self._lock:
            return {k: CertRecord(v.ready_at, v.revision, dict(v.revision_at), dict(v.renewal_time))
                    for k, v in self.records.items()}

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for r in self.records.values() if r.ready_at is not None)

    def at_revision(self, revision: int) -> int:
        with self._lock:
            return sum(1 for r in self.records.values() if r.revision >= revision)

    def wait(self, what: str, count: Callable[[], int], target: int, timeout: float,
             operator: Operator | None = None, every: float = 10.0) -> float:
        """Poll count() until it reaches target; print progress now and then. Returns time.monotonic()
        of the poll that saw it (polls every 50 ms, so that is within 50 ms of the event)."""
        deadline = time.monotonic() + timeout
        next_print = time.monotonic() + every
        while True:
            n = count()
            if n >= target:
                return time.monotonic()
            if operator is not None:
                operator.check_alive()
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"{what}: only {n}/{target} after {timeout:.0f} s"
                                 + (f" (watch error: {self._error})" if self._error else ""))
            if now >= next_print:
                progress(f"  {what}: {n}/{target}")
                next_print = now + every
            time.sleep(0.05)


# --- a tight asyncio client --------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    body: dict | None = None
    content_type: str = "application/json"
    also_ok: tuple[int, ...] = ()  # answers besides 2xx that are expected (a GET that finds nothing)


async def _run_requests(cp: ControlPlane, sequences: list[list[Request]], concurrency: int,
                        encoded: dict[int, bytes | None]) -> float:
    """Each sequence runs its requests in order; up to `concurrency` sequences at once. Any non-2xx fails.
    Returns the seconds from the first request to the last answer."""
    import aiohttp

    host, port = cp.host_port
    base = f"https://{host}:{port}"
    connector = aiohttp.TCPConnector(ssl=cp.ssl_context(), limit=concurrency)
    queue: asyncio.Queue = asyncio.Queue()
    for seq in sequences:
        queue.put_nowait(seq)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            while not queue.empty():
                seq = queue.get_nowait()
                for r in seq:
                    async with session.request(r.method, base + r.path, data=encoded[id(r)],
                                               headers={"Content-Type": r.content_type,
                                                        "Accept": "application/json"}) as resp:
                        await resp.read()
                        if not 200 <= resp.status < 300 and resp.status not in r.also_ok:
                            raise BenchError(f"{r.method} {r.path}: {resp.status}")
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started


def run_requests(cp: ControlPlane, sequences: list[list[Request]], concurrency: int = 16) -> float:
    """Run the sequences (see _run_requests) and return the wall time they took. The bodies are
    encoded before the clock starts: what is timed is the API, not json.dumps."""
    encoded = {id(r): json.dumps(r.body).encode() if r.body is not None else None for s in sequences for r in s}
    return asyncio.run(_run_requests(cp, sequences, concurrency, encoded))


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
