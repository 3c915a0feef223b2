"""`python -m bench --only recovery`: how fast the operator recovers from control-plane failures
in the middle of a bulk issuance, without being restarted.

Two faults, each on N ECDSA leaves signed by a CA Issuer, applied while the operator is stopped
(so the fault lands in the operator's own issuance, not in kubectl's apply), then the operator
is started and, once a quarter of them are Ready:

- **apiserver**: kube-apiserver is killed (SIGKILL) and started again on the same port with
  the same etcd. The figure is the time from /readyz answering again to all N Ready.
- **etcd**: etcd is frozen (SIGSTOP) for 15 s, then thawed. The figure is the time from the
  thaw to all N Ready.

Readiness comes from the benchmark's own watch of the Certificates (it relists after the
kill). Also reported: the time from the fault to all Ready, and how many certificates were
issued more than once (status.revision above 1), which should be none.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from bench import floor, manifests, stats
from bench.kube import BenchError, CertificateWatch, ControlPlane, Operator, progress
from bench.report import Row

FREEZE_SECONDS = 15.0
FAULT_AT = 0.25  # the share of the N certificates Ready when the fault comes
FAULTS = ("apiserver", "etcd")


def outcome(n: int, ready_at_fault: int, fault_at: float, back_at: float, all_ready_at: float,
            revisions: dict[str, int]) -> dict[str, Any]:
    """The figures of one run from its monotonic timestamps: the fault, the control plane serving
    again (/readyz, or the thaw), and the last certificate Ready."""
    if not fault_at <= back_at:
        raise ValueError("the control plane came back before the fault")
    return {"n": n, "ready_at_fault": ready_at_fault, "outage_seconds": back_at - fault_at,
            "recovery_seconds": max(0.0, all_ready_at - back_at),
            "fault_to_all_ready_seconds": all_ready_at - fault_at,
            "issued_twice": sum(1 for r in revisions.values() if r > 1)}


def _prepare(cp: ControlPlane, workdir: Path, ns: str, n: int) -> None:
    """A CA Issuer and N leaves waiting for an operator."""
    cp.create_namespace(ns)
    op = Operator.start(cp, workdir / f"operator-{ns}-setup.log", "--namespace", ns)
    try:
        cp.apply_file(_write(workdir, f"{ns}-chain", manifests.ca_chain(ns, "ECDSA")))
        cp.kubectl("wait", "-n", ns, "--for=condition=Ready", "--timeout=120s", "issuer/ca", timeout=150)
        op.wait_quiet()
    finally:
        op.stop()
    cp.apply_file(_write(workdir, ns, manifests.leaves(ns, range(n), "ECDSA", floor.CA_ISSUER)))


def _write(workdir: Path, name: str, objects: list[dict[str, Any]]) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(manifests.to_yaml(objects))
    return path


def _run(cp: ControlPlane, workdir: Path, fault: str, n: int, run: int) -> dict[str, Any]:
    ns = f"recovery-{fault}-{run}"
    _prepare(cp, workdir, ns, n)
    with CertificateWatch(cp, ns) as watch:
        op = Operator.start(cp, workdir / f"operator-{ns}.log", "--namespace", ns, wait_ready=False)
        try:
            watch.wait(f"{fault}: a quarter Ready", watch.ready_count, max(1, int(n * FAULT_AT)), 300, op)
            ready_at_fault = watch.ready_count()
            if ready_at_fault >= n:
                raise BenchError(f"all {n} were Ready before the fault: nothing was interrupted")
            fault_at = time.monotonic()
            if fault == "apiserver":
                cp.cluster.restart_apiserver()
            else:
                cp.cluster.freeze_etcd()
                try:
                    time.sleep(FREEZE_SECONDS)
                finally:
                    cp.cluster.thaw_etcd()
            back_at = time.monotonic()
            readyz: dict[str, float] = {}
            if fault == "etcd":
                # How long the API server itself takes to be ready again after the thaw, polled
                # beside the watch: part of the recovery time that is not the operator's.
                poller = threading.Thread(target=_poll_readyz, args=(cp, readyz), daemon=True)
                poller.start()
            all_ready_at = watch.wait(f"{fault}: all Ready after the fault", watch.ready_count, n, 600, op)
            op.check_alive()  # recovered by itself, not by a restart
            revisions = {name: rec.revision for name, rec in watch.snapshot().items()}
            if fault == "etcd":
                poller.join(60)
        finally:
            op.stop()
    result = outcome(n, ready_at_fault, fault_at, back_at, all_ready_at, revisions)
    if "at" in readyz:
        result["readyz_after_seconds"] = readyz["at"] - back_at
    return result


def _poll_readyz(cp: ControlPlane, out: dict[str, float], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cp.cluster.ready():
            out["at"] = time.monotonic()
            return
        time.sleep(0.05)


def scenario(cfg: Any, workdir: Path) -> dict[str, Any]:
    n = max(20, cfg.ecdsa_n // 2)
    out: dict[str, Any] = {fault: {"n": n, "runs": []} for fault in FAULTS}
    cp = ControlPlane.start(workdir / "cluster-recovery")
    try:
        for run in range(cfg.runs):
            for fault in FAULTS:
                progress(f"recovery, {fault}: run {run + 1}/{cfg.runs}, {n} ECDSA certificates")
                result = _run(cp, workdir, fault, n, run)
                came_back = "/readyz answered again" if fault == "apiserver" else "etcd was thawed"
                if "readyz_after_seconds" in result:
                    came_back += f" (/readyz {result['readyz_after_seconds']:.1f} s after the thaw)"
                progress(f"  fault with {result['ready_at_fault']}/{n} Ready; control plane out for "
                         f"{result['outage_seconds']:.1f} s; all Ready {result['recovery_seconds']:.1f} s after "
                         f"{came_back} ({result['fault_to_all_ready_seconds']:.1f} s after the fault); "
                         f"issued twice: {result['issued_twice']}")
                out[fault]["runs"].append(result)
    finally:
        cp.stop()
    for case in out.values():
        case["median"] = stats.median_of_runs(case["runs"])
    return out


ROWS = [
    Row("recovery: API server killed mid-issuance, /readyz -> all Ready (s)",
        ("recovery", "apiserver", "median", "recovery_seconds"), "{:.1f}", "<= 5", lambda v: v <= 5),
    Row("recovery:   API server kill -> all Ready (s)",
        ("recovery", "apiserver", "median", "fault_to_all_ready_seconds"), "{:.1f}"),
    Row("recovery:   issued twice", ("recovery", "apiserver", "median", "issued_twice"), "{:.0f}", "0",
        lambda v: v == 0),
    Row(f"recovery: etcd frozen {FREEZE_SECONDS:.0f} s mid-issuance, thaw -> all Ready (s)",
        ("recovery", "etcd", "median", "recovery_seconds"), "{:.1f}", "<= 5", lambda v: v <= 5),
    Row("recovery:   etcd thaw -> API server /readyz (s)", ("recovery", "etcd", "median", "readyz_after_seconds"),
        "{:.1f}"),
    Row("recovery:   issued twice", ("recovery", "etcd", "median", "issued_twice"), "{:.0f}", "0",
        lambda v: v == 0),
]
