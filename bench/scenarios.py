"""The scenarios. Each one starts its own control plane(s), runs cfg.runs times, and returns its runs
and their medians. Nothing here asserts: figures are compared with targets by bench.report."""
from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import floor, manifests, profile, stats
from bench.kube import (
    BenchError,
    CertificateWatch,
    ControlPlane,
    CpuMeter,
    Operator,
    Request,
    chunks,
    cpu_seconds,
    progress,
    run_requests,
)

OPERATOR_WORKERS = 8  # the operator's default --workers, which the benchmark runs it with


@dataclass(frozen=True)
class Config:
    runs: int = 3
    ecdsa_n: int = 1000
    rsa_n: int = 200
    memory_small_n: int = 1000
    memory_large_n: int = 10_000
    foreign_secrets: int = 20_000
    storm_n: int = 1000
    soak_n: int = 500
    soak_minutes: float = 60.0
    soak_interval: float = 30.0
    api_concurrency: int = 16
    profile_dir: Path | None = None
    scale_sizes: tuple[int, ...] = (1000, 10_000, 50_000)  # --only scale
    rsa_restart_n: int = 10_000  # --only rsa-restart

    @classmethod
    def quick(cls, **overrides) -> "Config":
        base = dict(runs=2, ecdsa_n=100, rsa_n=20, memory_small_n=100, memory_large_n=500,
                    foreign_secrets=2000, storm_n=100, soak_n=50, soak_minutes=3.0, soak_interval=10.0,
                    scale_sizes=(100, 500), rsa_restart_n=100)
        base.update(overrides)
        return cls(**base)


def _mb(mib_values: dict[str, float]) -> dict[str, float]:
    """{'rss_mib': x, 'hwm_mib': y} -> {'rss_mb': ..., 'hwm_mb': ...}."""
    return {k.replace("_mib", "_mb"): round(v * 1024 * 1024 / 1e6, 2) for k, v in mib_values.items()}


def _write(workdir: Path, name: str, objects: list[dict]) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(manifests.to_yaml(objects))
    return path


def _setup_ca(cp: ControlPlane, workdir: Path, namespace: str, algorithm: str) -> None:
    cp.apply_file(_write(workdir, f"{namespace}-chain", manifests.ca_chain(namespace, algorithm)))
    cp.kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=120s", "issuer/ca", timeout=150)


def _profile_path(cfg: Config, name: str) -> Path | None:
    return cfg.profile_dir / f"{name}.txt" if cfg.profile_dir else None


# --- 1-3: throughput, its floor, and the API cost -------------------------------------------------------


def _operator_run(cp: ControlPlane, cfg: Config, workdir: Path, algorithm: str, n: int, run: int) -> dict:
    ns = f"tp-{algorithm.lower()}-{run}"
    cp.create_namespace(ns)
    op = Operator.start(cp, workdir / f"operator-{ns}.log", "--namespace", ns)
    try:
        _setup_ca(cp, workdir, ns, algorithm)
        op.wait_quiet()
        path = _write(workdir, ns, manifests.leaves(ns, range(n), algorithm, floor.CA_ISSUER))
        with CertificateWatch(cp, ns) as watch:
            own_before = Counter(watch.requests)
            before = cp.request_counts()
            meter = CpuMeter({"operator": op.pid, **cp.pids})
            with profile.record(op.pid, _profile_path(cfg, f"{ns}")) as prof:
                started = time.monotonic()
                apply_seconds = cp.apply_file(path)
                ready_at = watch.wait(f"{algorithm} Ready", watch.ready_count, n, 600 + n * 2, op)
            cores = meter.cores()
            seconds = ready_at - started
            op.wait_events_posted(timeout=120 + 2 * n / 50)  # events trail the issuances (--event-qps)
            after = cp.request_counts()
            own = Counter(watch.requests) - own_before
        delta = stats.counter_delta(after, before) - own
        reconciles = stats.sync_calls(op.metrics())
        out = {"seconds": seconds, "per_second": n / seconds, "apply_seconds": apply_seconds,
               "after_apply_seconds": seconds - apply_seconds, "cpu_cores": cores,
               # the operator's CPU, its key-making processes included, over the window, per issuance
               "cpu_ms_per_issuance": 1000 * cores["operator"] * seconds / n,
               "reconciles_per_issuance": reconciles / n,
               **stats.api_cost(delta, n, applied_by_client=n), **_mb(op.memory())}
        if prof:
            out["profile"] = prof
        # a restart with these n certificates up to date: what one reconcile of each costs
        op.stop()
        op = Operator.start(cp, workdir / f"operator-{ns}-restart.log", "--namespace", ns, wait_ready=False)
        with profile.record(op.pid, _profile_path(cfg, f"{ns}-restart")) as prof:
            steady = _wait_steady(op, n + 1, timeout=600 + n)  # the leaves and the CA certificate
        out["restart_seconds"] = steady["steady_seconds"]
        out["restart_cpu_seconds"] = cpu_seconds(op.pid)
        if prof:
            out["restart_profile"] = prof
        return out
    finally:
        op.stop()


def _backlog_run(cp: ControlPlane, cfg: Config, workdir: Path, algorithm: str, n: int, run: int) -> dict:
    """The operator alone: n Certificates applied while it is stopped, then the time from its start
    to all Ready. No kubectl apply runs beside it, so this is its own pace."""
    ns = f"backlog-{algorithm.lower()}-{run}"
    cp.create_namespace(ns)
    op = Operator.start(cp, workdir / f"operator-{ns}-setup.log", "--namespace", ns)
    try:
        _setup_ca(cp, workdir, ns, algorithm)
        op.wait_quiet()
    finally:
        op.stop()
    cp.apply_file(_write(workdir, ns, manifests.leaves(ns, range(n), algorithm, floor.CA_ISSUER)))
    with CertificateWatch(cp, ns) as watch:
        op = Operator.start(cp, workdir / f"operator-{ns}.log", "--namespace", ns, wait_ready=False)
        try:
            meter = CpuMeter({"operator": op.pid, **cp.pids})
            with profile.record(op.pid, _profile_path(cfg, ns)) as prof:
                first_at = watch.wait(f"{algorithm} backlog first Ready", watch.ready_count, 1, 600, op)
                issuing = CpuMeter({"operator": op.pid, **cp.pids})
                ready_at = watch.wait(f"{algorithm} backlog Ready", watch.ready_count, n, 600 + n * 2, op)
            cores = meter.cores()
            # after the first Ready the start-up is over: what each further issuance costs each process
            used = issuing.used()
            used.pop("bench")  # the benchmark's own watch
        finally:
            op.stop()
    out = {"seconds": ready_at - op.started, "per_second": n / (ready_at - op.started), "cpu_cores": cores,
           "first_ready_seconds": first_at - op.started,
           "cpu_ms_per_issuance": stats.ms_per_issuance(used, n - 1)}
    if prof:
        out["profile"] = prof
    return out


def throughput(cfg: Config, workdir: Path) -> dict:
    cases = (("ECDSA", cfg.ecdsa_n), ("RSA", cfg.rsa_n))
    out = {alg.lower(): {"n": n, "runs": []} for alg, n in cases}
    cp = ControlPlane.start(workdir / "cluster-throughput")
    try:
        for run in range(cfg.runs):
            for algorithm, n in cases:
                progress(f"throughput {algorithm} N={n}: run {run + 1}/{cfg.runs}: the operator")
                result = _operator_run(cp, cfg, workdir, algorithm, n, run)
                progress(f"  {n} Ready in {result['seconds']:.2f} s ({result['per_second']:.1f}/s; kubectl apply "
                         f"{result['apply_seconds']:.2f} s; operator {result['cpu_cores'].get('operator', 0):.2f} "
                         f"cores, apiserver {result['cpu_cores'].get('apiserver', 0):.2f}, etcd "
                         f"{result['cpu_cores'].get('etcd', 0):.2f})")
                progress(f"  floor (a): crypto alone for {n} {algorithm}")
                result["crypto_floor"] = floor.crypto_floor(algorithm, n)
                result["crypto_floor_seconds"] = result["crypto_floor"]["seconds"]
                progress(f"  floor (b): API alone for {n} issuances")
                result["api_floor"] = floor.api_floor(cp, f"floor-{algorithm.lower()}-{run}", algorithm, n, workdir,
                                                      cfg.api_concurrency, operator_workers=OPERATOR_WORKERS)
                result["api_floor_seconds"] = result["api_floor"]["seconds"]
                result["apply_floor_seconds"] = result["api_floor"]["kubectl_apply_seconds"]
                result["operator_pattern_seconds"] = result["api_floor"].get("operator_pattern_seconds")
                result["two_writes_at_8_seconds"] = result["api_floor"].get(
                    "two_writes_at_operator_concurrency_seconds")
                result["efficiency"] = stats.efficiency(result["seconds"], result["crypto_floor_seconds"],
                                                        result["api_floor_seconds"])
                result["efficiency_with_apply_floor"] = max(result["crypto_floor_seconds"],
                                                            result["api_floor_seconds"],
                                                            result["apply_floor_seconds"]) / result["seconds"]
                progress(f"  backlog: {n} {algorithm} Certificates applied first, then the operator started")
                result["backlog"] = _backlog_run(cp, cfg, workdir, algorithm, n, run)
                result["backlog_efficiency"] = stats.efficiency(result["backlog"]["seconds"],
                                                                result["crypto_floor_seconds"],
                                                                result["api_floor_seconds"])
                # With the cores saturated, time follows CPU: where the API floor is the binding one
                # (ECDSA; RSA's is the crypto), the floor's CPU per issuance over the backlog's is the
                # most max(a,b)/backlog can reach on this machine, start-up aside.
                if result["api_floor_seconds"] >= result["crypto_floor_seconds"]:
                    result["backlog_cpu_ceiling"] = (result["api_floor"]["cpu_ms_per_issuance"]["total"]
                                                     / result["backlog"]["cpu_ms_per_issuance"]["total"])
                progress(f"  floor: crypto {result['crypto_floor_seconds']:.2f} s, API "
                         f"{result['api_floor_seconds']:.2f} s (kubectl apply alone {result['apply_floor_seconds']:.2f}"
                         f" s); floor/ours = {result['efficiency']:.2f}; backlog {result['backlog']['seconds']:.2f} s "
                         f"from the operator's start, floor/backlog = {result['backlog_efficiency']:.2f}; writes per "
                         f"issuance {result['writes_per_issuance_excl_events']:.2f} + "
                         f"{result['events_per_issuance']:.2f} events, reads {result['reads_per_issuance']:.2f}")
                out[algorithm.lower()]["runs"].append(result)
    finally:
        cp.stop()
    for case in out.values():
        case["median"] = stats.median_of_runs(case["runs"])
    return out


# --- 4-5: memory, and a restart with everything up to date ------------------------------------------------


def _wait_steady(op: Operator, n: int, timeout: float) -> dict:
    """After a start: until every certificate was reconciled once (its Ready gauge is set; the sync count
    is reported too) and the operator is idle.

    Scraping /metrics costs the operator CPU (tens of thousands of series), so the process's CPU time
    from /proc is watched instead, and /metrics is read only once it has been idle for a second."""
    deadline = op.started + timeout
    history: list[tuple[float, float]] = []  # (monotonic, cpu seconds)
    busy_until = op.started
    while time.monotonic() < deadline:
        op.check_alive()
        now, cpu = time.monotonic(), cpu_seconds(op.pid)
        if history and cpu - history[-1][1] > 0.02:
            busy_until = now
        history.append((now, cpu))
        if now - busy_until >= 1.0 and now - op.started > 2.0:
            try:
                text = op.metrics()
            except OSError:
                text = ""
            # every certificate reconciled for real: its Ready gauge is set (a sync of a key whose object
            # is not cached yet counts in sync_call_count but sets nothing)
            ready = stats.count_series(text, "certmanager_certificate_ready_status", 1.0, condition="True")
            if ready >= n:
                syncs = stats.sync_calls(text)
                return {"steady_seconds": busy_until - op.started, "reconciled": syncs, "ready_series": ready}
            history.append((time.monotonic(), cpu_seconds(op.pid)))  # the scrape's own CPU is not work
            busy_until = time.monotonic()
        time.sleep(0.1)
    raise BenchError(f"the operator did not settle within {timeout:.0f} s of its start")


def _memory_run(cfg: Config, workdir: Path, run: int) -> dict:
    small, large = cfg.memory_small_n, cfg.memory_large_n
    cp = ControlPlane.start(workdir / f"cluster-memory-{run}")
    op = None
    try:
        ns = "mem"
        cp.create_namespace(ns)
        cp.create_namespace("unrelated")
        op = Operator.start(cp, workdir / f"operator-memory-{run}.log")  # all namespaces, as deployed
        out: dict = {"small_n": small, "large_n": large, "foreign_secrets": cfg.foreign_secrets}
        with CertificateWatch(cp, ns) as watch:
            cp.apply_file(_write(workdir, f"mem-{run}-issuer", [manifests.self_signed_issuer(ns)]))
            started = time.monotonic()
            cp.apply_file(_write(workdir, f"mem-{run}-small",
                                 manifests.leaves(ns, range(small), "ECDSA", "self")))
            watch.wait("Ready", watch.ready_count, small, 600 + small, op)
            op.wait_quiet()
            out["small"] = _mb(op.memory())
            progress(f"  {small} Ready: RSS {out['small']['rss_mb']:.1f} MB, peak {out['small']['hwm_mb']:.1f} MB")
            cp.apply_file(_write(workdir, f"mem-{run}-large",
                                 manifests.leaves(ns, range(small, large), "ECDSA", "self")))
            watch.wait("Ready", watch.ready_count, large, 600 + large, op, every=30)
            out["issue_seconds"] = time.monotonic() - started
            op.wait_quiet(timeout=120)
            out["large"] = _mb(op.memory())
            progress(f"  {large} Ready: RSS {out['large']['rss_mb']:.1f} MB, peak {out['large']['hwm_mb']:.1f} MB")

        progress(f"  {cfg.foreign_secrets} unrelated 1 KiB Secrets")
        names = [(("mem", "unrelated")[i % 2], f"foreign-{i}") for i in range(cfg.foreign_secrets)]
        sequences = [[Request("POST", f"/api/v1/namespaces/{ns_}/secrets", manifests.opaque_secret(ns_, name))]
                     for ns_, name in names]
        out["foreign_create_seconds"] = sum(run_requests(cp, batch, cfg.api_concurrency)
                                            for batch in chunks(sequences, 5000))
        time.sleep(5)
        op.wait_quiet()
        out["with_foreign"] = _mb(op.memory())
        out["foreign_growth_mb"] = out["with_foreign"]["rss_mb"] - out["large"]["rss_mb"]
        out["foreign_hwm_growth_mb"] = out["with_foreign"]["hwm_mb"] - out["large"]["hwm_mb"]
        progress(f"  with unrelated Secrets: RSS {out['with_foreign']['rss_mb']:.1f} MB "
                 f"({out['foreign_growth_mb']:+.1f} MB), peak {out['with_foreign']['hwm_mb']:.1f} MB")
        scrape_started = time.monotonic()
        text = op.metrics()  # what one Prometheus scrape costs, in time and in peak memory
        out["metrics_scrape"] = {"seconds": time.monotonic() - scrape_started, "bytes": len(text),
                                 "series": sum(1 for line in text.splitlines() if line and not line.startswith("#")),
                                 **_mb(op.memory())}
        progress(f"  one /metrics scrape: {out['metrics_scrape']['series']} series, {len(text) / 1e6:.1f} MB of text "
                 f"in {out['metrics_scrape']['seconds']:.2f} s; peak RSS now {out['metrics_scrape']['hwm_mb']:.1f} MB")

        # restart with everything up to date
        op.stop()
        before = cp.request_counts()
        op = Operator.start(cp, workdir / f"operator-memory-{run}-restart.log", wait_ready=False)
        with profile.record(op.pid, _profile_path(cfg, f"restart-{run}")) as prof:
            steady = _wait_steady(op, large, timeout=600 + large / 10)
        time.sleep(2)  # let anything a reconcile might write land
        after = cp.request_counts()
        split = stats.split_requests(stats.counter_delta(after, before))
        verbs = op.requests_by_verb()
        out["restart"] = {
            **steady,
            "reconciles_per_certificate": steady["reconciled"] / large,
            "writes": sum(split["writes"].values()),
            "writes_by_resource": split["writes"],
            "operator_write_requests": sum(v for k, v in verbs.items() if k in ("create", "patch", "apply", "update")),
            "operator_requests": verbs,
            **_mb(op.memory()),
        }
        if prof:
            out["restart"]["profile"] = prof
        progress(f"  restart: steady after {steady['steady_seconds']:.1f} s, {out['restart']['writes']} writes, "
                 f"RSS {out['restart']['rss_mb']:.1f} MB, peak {out['restart']['hwm_mb']:.1f} MB")
        return out
    finally:
        if op is not None:
            op.stop()
        cp.stop()


def memory(cfg: Config, workdir: Path) -> dict:
    runs = []
    for run in range(cfg.runs):
        progress(f"memory and restart: run {run + 1}/{cfg.runs} ({cfg.memory_small_n} then {cfg.memory_large_n} "
                 f"certificates, then {cfg.foreign_secrets} unrelated Secrets, then a restart)")
        runs.append(_memory_run(cfg, workdir, run))
    return {"runs": runs, "median": stats.median_of_runs(runs)}


# --- 6: renewal storm ------------------------------------------------------------------------------------


def _parse_time(value: str) -> float:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def _storm_run(cp: ControlPlane, cfg: Config, workdir: Path, run: int) -> dict:
    n = cfg.storm_n
    ns = f"storm-{run}"
    cp.create_namespace(ns)
    op = Operator.start(cp, workdir / f"operator-{ns}.log", "--namespace", ns)
    try:
        _setup_ca(cp, workdir, ns, "ECDSA")
        path = _write(workdir, ns, manifests.leaves(ns, range(n), "ECDSA", floor.CA_ISSUER,
                                                   duration="1h", renew_before="59m"))
        with CertificateWatch(cp, ns) as watch:
            started = time.monotonic()
            cp.apply_file(path)
            watch.wait("issued", watch.ready_count, n, 600 + n, op)
            issue_seconds = time.monotonic() - started
            first = watch.snapshot()
            due = sorted(_parse_time(r.renewal_time[1]) for r in first.values() if r.renewal_time.get(1))
            if len(due) < n:
                raise BenchError(f"{n - len(due)} certificates reported no renewalTime at revision 1")
            progress(f"  {n} issued in {issue_seconds:.1f} s; renewals due within {due[-1] - due[0]:.1f} s, "
                     f"the first in {due[0] - time.time():.0f} s")
            # the issuance's events trail it (--event-qps); those still pending 5 s before the first
            # renewal is due are posted during the storm and counted with it
            if not op.wait_events_posted(timeout=max(1.0, due[0] - time.time() - 5), required=False):
                progress("  some events of the issuance were still being posted when the renewals began")
            before = cp.request_counts()
            own_before = Counter(watch.requests)
            meter = CpuMeter({"operator": op.pid, **cp.pids})
            missed_error = None
            with profile.record(op.pid, _profile_path(cfg, ns)) as prof:
                try:
                    watch.wait("renewed", lambda: watch.at_revision(2), n, max(0.0, due[-1] - time.time()) + 300, op)
                except BenchError as e:
                    missed_error = str(e)
            done_wall = time.time()
            cores = meter.cores()
            # Events trail the renewals (--event-qps), and the next wave of renewals comes a minute after
            # this one: wait for them only until just before it. Those still pending are not counted.
            events_posted = op.wait_events_posted(timeout=max(1.0, due[0] + 55 - time.time()), required=False)
            after = cp.request_counts()
            own = Counter(watch.requests) - own_before
            records = watch.snapshot()
    finally:
        op.stop()
    renewed = {k: r for k, r in records.items() if 2 in r.revision_at}
    lags = sorted(r.revision_at[2] - _parse_time(r.renewal_time[1]) for r in renewed.values())
    revisions = sum(max(0, r.revision - 1) for r in records.values())  # renewals seen in the window
    out = {
        "n": n,
        "issue_seconds": issue_seconds,
        "renewal_spread_seconds": due[-1] - due[0],
        "renewed": len(renewed),
        "missed": n - len(renewed),
        "early": sum(1 for lag in lags if lag < -1.0),  # renewalTime is whole seconds
        "drain_seconds": (max(r.revision_at[2] for r in renewed.values()) if renewed else done_wall) - due[0],
        "after_last_due_seconds": (max(r.revision_at[2] for r in renewed.values()) if renewed else done_wall) - due[-1],
        "lag_median_seconds": stats.median(lags),
        "lag_max_seconds": lags[-1] if lags else None,
        "cpu_cores": cores,
        "events_all_posted": events_posted,
    }
    if revisions:
        out.update({f"renewal_{k}": v for k, v in stats.api_cost(stats.counter_delta(after, before) - own,
                                                                  revisions).items()})
    if missed_error:
        out["error"] = missed_error
    if prof:
        out["profile"] = prof
    return out


def storm(cfg: Config, workdir: Path) -> dict:
    runs = []
    cp = ControlPlane.start(workdir / "cluster-storm")
    try:
        for run in range(cfg.runs):
            progress(f"renewal storm N={cfg.storm_n}: run {run + 1}/{cfg.runs} (duration 1h, renewBefore 59m: "
                     "every certificate renews about a minute after its issuance)")
            result = _storm_run(cp, cfg, workdir, run)
            progress(f"  renewed {result['renewed']}/{result['n']}, drained {result['drain_seconds']:.1f} s after the "
                     f"first was due ({result['after_last_due_seconds']:.1f} s after the last), lag median "
                     f"{result['lag_median_seconds'] or 0:.1f} s, max {result['lag_max_seconds'] or 0:.1f} s")
            runs.append(result)
    finally:
        cp.stop()
    return {"runs": runs, "median": stats.median_of_runs(runs)}


# --- 7: soak -------------------------------------------------------------------------------------------


def soak(cfg: Config, workdir: Path, minutes: float | None = None,
         clock: Callable[[], float] = time.monotonic) -> dict:
    minutes = cfg.soak_minutes if minutes is None else minutes
    n = cfg.soak_n
    cp = ControlPlane.start(workdir / "cluster-soak")
    op = None
    try:
        ns = "soak"
        cp.create_namespace(ns)
        op = Operator.start(cp, workdir / "operator-soak.log")
        _setup_ca(cp, workdir, ns, "ECDSA")
        path = _write(workdir, ns, manifests.leaves(ns, range(n), "ECDSA", floor.CA_ISSUER,
                                                   duration="1h", renew_before="57m"))
        with CertificateWatch(cp, ns) as watch:
            cp.apply_file(path)
            watch.wait("issued", watch.ready_count, n, 600 + n, op)
            progress(f"soak: {n} certificates renewing every ~3 min; sampling RSS every {cfg.soak_interval:.0f} s "
                     f"for {minutes:g} min")
            samples: list[dict] = []
            start = clock()
            cpu0 = cpu_seconds(op.pid)
            worst_overdue = 0
            while True:
                op.check_alive()
                elapsed = clock() - start
                mem = _mb(op.memory())
                records = watch.snapshot()
                now = time.time()
                overdue = sum(1 for r in records.values()
                              if r.renewal_time.get(r.revision) and now - _parse_time(r.renewal_time[r.revision]) > 60)
                worst_overdue = max(worst_overdue, overdue)
                renewals = sum(max(0, r.revision - 1) for r in records.values())
                samples.append({"t": round(elapsed, 1), **mem, "renewals": renewals, "overdue": overdue,
                                "cpu_seconds": round(cpu_seconds(op.pid) - cpu0, 2)})
                if len(samples) % max(1, int(300 / cfg.soak_interval)) == 1 or elapsed >= minutes * 60:
                    progress(f"  soak {elapsed / 60:.1f}/{minutes:g} min: RSS {mem['rss_mb']:.1f} MB, peak "
                             f"{mem['hwm_mb']:.1f} MB, {renewals} renewals, {overdue} overdue")
                if elapsed >= minutes * 60:
                    break
                time.sleep(max(0.0, start + len(samples) * cfg.soak_interval - clock()))
    finally:
        if op is not None:
            op.stop()
        cp.stop()
    # each certificate renews every ~3 min (60 min - 57 min) after its first issuance; a renewal due in
    # the last 30 s may not have landed yet, which the overdue count covers
    expected = sum(int(max(0.0, now - min(r.revision_at.values()) - 30) // 180)
                   for r in records.values() if r.revision_at)
    series = [(s["t"], s["rss_mb"]) for s in samples]
    slope = stats.slope_per_hour_second_half(series) if len(series) >= 4 else None
    return {
        "n": n,
        "minutes": minutes,
        "interval_seconds": cfg.soak_interval,
        "rss_slope_mb_per_hour": slope,
        "rss_first_mb": samples[0]["rss_mb"],
        "rss_last_mb": samples[-1]["rss_mb"],
        "hwm_last_mb": samples[-1]["hwm_mb"],
        "renewals": samples[-1]["renewals"] - samples[0]["renewals"],
        "expected_renewals": expected,
        "max_overdue": worst_overdue,
        "operator_cpu_cores": samples[-1]["cpu_seconds"] / max(1.0, samples[-1]["t"]),
        "samples": samples,
    }


SCENARIOS = {"throughput": throughput, "memory": memory, "storm": storm, "soak": soak}
ALIASES = {"restart": "memory", "floor": "throughput", "api": "throughput", "storm": "storm"}
