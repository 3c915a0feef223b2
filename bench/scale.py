"""`python -m bench --only scale`: how the operator's costs grow with the number of certificates.

One local control plane, one namespace, ECDSA P-256 leaves from a selfSigned Issuer (as the memory
scenario makes them), grown step by step to each size (1,000, 10,000 and 50,000 by default;
`--scale-sizes` for others): only the difference is created, in files of FILE_DOCUMENTS documents
so that no single `kubectl apply` gets huge. At each size:

1. the operator that did the growing (all namespaces, default flags) is idle: its peak RSS (VmHWM)
   and steady RSS (VmRSS);
2. one /metrics scrape of it: seconds and bytes;
3. `certmint list -A`: seconds, as a user runs it (checked: one line per certificate);
4. a restart: the operator is stopped and a fresh one started; the seconds to steady state
   (bench.scenarios._wait_steady: every certificate reconciled once, then idle), its peak and
   steady RSS once idle, and the API writes in the window (should be none);
5. the CPU of one full resync (see measure_resync), with another fresh operator.

Then the growth per certificate of each figure between consecutive sizes, and where it stops being
linear: a segment whose slope is more than NONLINEAR times the previous segment's.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench import manifests, report, stats
from bench.kube import BenchError, CertificateWatch, ControlPlane, Operator, chunks, cpu_seconds, progress
from bench.report import Row
from bench.scenarios import Config, _mb, _wait_steady, _write

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES: tuple[int, ...] = Config().scale_sizes
PLOT = HERE / "scale.png"
NAMESPACE = "scale"
FILE_DOCUMENTS = 2500  # Certificates per `kubectl apply` file
NONLINEAR = 1.5  # a segment's slope above this many times the previous one's is flagged
TABLE_START = "<!-- scale table: python -m bench --only scale rewrites this -->"
TABLE_END = "<!-- end scale table -->"
SECTION = "### Scale"


# --- the figures, their units, and their growth per certificate (pure) ---------------------------------


# (key in a size's figures, label with its unit, unit of the slope, factor from figure unit per
# certificate to slope unit)
FIGURES: tuple[tuple[str, str, str, float], ...] = (
    ("rss_steady_mb", "steady RSS (MB)", "KB", 1000.0),
    ("rss_peak_mb", "peak RSS (MB)", "KB", 1000.0),
    ("restart_seconds", "restart, start -> steady (s)", "ms", 1000.0),
    ("restart_rss_steady_mb", "steady RSS after restart (MB)", "KB", 1000.0),
    ("restart_rss_peak_mb", "peak RSS after restart (MB)", "KB", 1000.0),
    ("resync_cpu_seconds", "one resync, operator CPU (s)", "ms", 1000.0),
    ("scrape_seconds", "one /metrics scrape (s)", "ms", 1000.0),
    ("scrape_mb", "one /metrics scrape (MB)", "KB", 1000.0),
    ("list_seconds", "`certmint list -A` (s)", "ms", 1000.0),
)


def slopes(points: Mapping[int, float | None], factor: float = 1.0) -> list[dict[str, Any]]:
    """The growth per certificate between consecutive sizes, times factor (e.g. 1000: MB -> KB).

    A segment is flagged `nonlinear` when its slope is more than NONLINEAR times the previous
    segment's; only a positive previous slope can be compared with (a flat or falling figure has
    no rate to exceed). A segment with a missing end has slope None and breaks the comparison."""
    sizes = sorted(points)
    out: list[dict[str, Any]] = []
    previous: float | None = None
    for a, b in zip(sizes, sizes[1:], strict=False):
        ya, yb = points[a], points[b]
        slope = None if ya is None or yb is None else (yb - ya) / (b - a) * factor
        ratio = slope / previous if slope is not None and previous is not None and previous > 0 else None
        out.append({"from": a, "to": b, "per_certificate": slope, "ratio": ratio,
                    "nonlinear": ratio is not None and ratio > NONLINEAR})
        previous = slope
    return out


def analyse(by_size: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Slopes of every figure from {size: figures}, and a sentence for each segment flagged."""
    out: dict[str, Any] = {"slopes": {}, "nonlinear": []}
    for key, label, unit, factor in FIGURES:
        segments = slopes({n: figures.get(key) for n, figures in by_size.items()}, factor)
        for s in segments:
            s["unit"] = f"{unit}/certificate"
        out["slopes"][key] = segments
        for before, s in zip(segments, segments[1:], strict=False):
            if s["nonlinear"]:
                out["nonlinear"].append(
                    f"{label}: not linear from {s['from']:,} to {s['to']:,} certificates: "
                    f"{s['per_certificate']:.3g} {unit}/certificate, {s['ratio']:.1f}x the "
                    f"{before['per_certificate']:.3g} {unit}/certificate from {before['from']:,} to {before['to']:,}")
    return out


def _cell(value: Any, fmt: str | None = None) -> str:
    """A figure to three significant digits (no more decimals than that above 10)."""
    if value is None:
        return "-"
    if fmt is None:
        fmt = "{:.0f}" if abs(value) >= 100 else "{:.1f}" if abs(value) >= 10 else "{:.3g}"
    return fmt.format(value)


def render_table(scale: Mapping[str, Any], measured: Mapping[str, Any] | None = None) -> str:
    """Markdown: one row per figure, its value at each size, then its growth per certificate over each
    segment (marked where it is more than NONLINEAR times the previous segment's)."""
    by_size = {int(n): figures for n, figures in (scale.get("median") or {}).items()}
    sizes = sorted(by_size)
    segments: Mapping[str, list[dict[str, Any]]] = scale.get("slopes") or analyse(by_size)["slopes"]
    pairs = zip(sizes, sizes[1:], strict=False)
    header = ["figure", *(f"{n:,}" for n in sizes), *(f"per cert. {a:,} -> {b:,}" for a, b in pairs)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label, unit, _ in FIGURES:
        cells = [label, *(_cell(by_size[n].get(key)) for n in sizes)]
        for s in segments.get(key, []):
            text = "-" if s["per_certificate"] is None else f"{s['per_certificate']:.3g} {unit}"
            if s.get("nonlinear"):
                text += f" (**{s['ratio']:.1f}x: not linear**)"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| " + " | ".join(["API writes during the restart (target 0)",
                                     *(_cell(by_size[n].get("restart_writes"), "{:.0f}") for n in sizes),
                                     *("" for _ in sizes[1:])]) + " |")
    text = "\n".join(lines)
    if measured:
        m = measured.get("machine") or {}
        text = (f"Measured {measured.get('date', '?')} UTC at `{measured.get('commit', '?')}` on "
                f"{m.get('cores', '?')} cores ({measured.get('mode', '')}); medians of the runs.\n\n" + text)
    return text


def section_block(table: str, plot: str = "scale.png") -> str:
    """What goes between the markers: the table and a link to the plot."""
    return f"{table}\n\nPlot, each figure against the number of certificates: [{plot}]({plot}).\n"


def rewrite_section(readme: str, block: str) -> str:
    """readme with block between TABLE_START and TABLE_END. Without the markers, a SECTION holding them
    is added before '## History' (or at the end)."""
    if TABLE_START in readme and TABLE_END in readme.split(TABLE_START, 1)[1]:
        head, rest = readme.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        return f"{head}{TABLE_START}\n\n{block.strip()}\n\n{TABLE_END}{tail}"
    section = f"{SECTION}\n\n{TABLE_START}\n\n{block.strip()}\n\n{TABLE_END}\n\n"
    at = readme.find("\n## History")
    if at < 0:
        return readme.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    return readme[:at + 1] + section + readme[at + 1:]


def summary(scale: Mapping[str, Any]) -> str:
    """The printed summary: the table, then where figures stop being linear."""
    lines = [render_table(scale)]
    nonlinear = scale.get("nonlinear") or []
    lines.append("")
    lines.extend(nonlinear or [f"every figure grows linearly (no segment above {NONLINEAR}x the previous one)"])
    if scale.get("plot"):
        lines.append(f"plot: {scale['plot']}")
    return "\n".join(lines)


def parse_sizes(text: str) -> tuple[int, ...]:
    """'1000,10000,50000' -> (1000, 10000, 50000): positive, sorted, without repeats."""
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"not a list of numbers: {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"sizes must be positive numbers: {text!r}")
    return tuple(sizes)


# --- measurements -----------------------------------------------------------------------------------


def list_all(cp: ControlPlane, n: int) -> dict[str, Any]:
    """`certmint list -A` as a user runs it (KUBECONFIG from the environment), timed from the spawn to
    its exit; its output must have one line per certificate besides the header."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "certmint.cli", "list", "-A"], capture_output=True, text=True,
                            env=cp.cluster.env(), timeout=600)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise BenchError(f"certmint list -A exited {result.returncode}: {result.stderr[-2000:]}")
    rows = [line for line in result.stdout.splitlines()[1:] if line.startswith(NAMESPACE + " ")]
    if len(rows) != n:
        raise BenchError(f"certmint list -A printed {len(rows)} certificates of {NAMESPACE}, expected {n}")
    return {"list_seconds": seconds, "list_lines": len(rows), "list_bytes": len(result.stdout)}


def measure_resync(cp: ControlPlane, op: Operator, period: float, timeout: float) -> dict[str, Any]:
    """The operator CPU of one full resync: the relisting of every watched scope that the controller
    does every --resync-period.

    op was started with a --resync-period of `period` seconds, longer than it needs to reach steady
    state, and is steady now. Its first resync is due `period` seconds after its store was filled,
    so not before op.started + period. From now until then the process is idle: its CPU rate over
    that stretch is the idle baseline. From just before that moment, its CPU time is sampled every
    0.1 s; the resync is the burst that follows (CPU above the baseline), and it has ended when a
    whole second passes with no more than the baseline plus one clock tick. The figure is the CPU
    from the start of that window to the end of the burst, minus the baseline over the same time.
    The window does not end before the API server has counted a Certificate LIST since it began (the
    resync's), so a stray tick of CPU before the resync cannot end it early."""
    before = cp.request_counts()
    t0, c0 = time.monotonic(), cpu_seconds(op.pid)
    due = op.started + period
    if due - t0 < 2.0:
        raise BenchError(f"the resync is due {due - t0:.1f} s from now: too soon to measure the idle baseline")
    while time.monotonic() < due - 0.5:
        op.check_alive()
        time.sleep(0.1)
    w0, cw0 = time.monotonic(), cpu_seconds(op.pid)
    idle = (cw0 - c0) / (w0 - t0)  # cores
    tick = 0.011  # one clock tick of CPU time (1/100 s), and a little
    history: list[tuple[float, float]] = [(w0, cw0)]
    burst_end: float | None = None
    delta: dict = {}
    checked = 0.0
    deadline = due + timeout
    while True:
        op.check_alive()
        time.sleep(0.1)
        now, cpu = time.monotonic(), cpu_seconds(op.pid)
        if cpu - history[-1][1] > idle * (now - history[-1][0]) + 1e-9 and cpu - cw0 - idle * (now - w0) > tick:
            burst_end = now
        history.append((now, cpu))
        if burst_end is not None and now - burst_end >= 1.0 and now - checked >= 1.0:
            second_ago = [h for h in history if now - h[0] >= 1.0][-1]
            if cpu - second_ago[1] <= idle * (now - second_ago[0]) + tick:
                checked = now
                delta = stats.counter_delta(cp.request_counts(), before)
                if delta.get(("LIST", "certificates"), 0):
                    break
        if now > deadline:
            raise BenchError(f"no resync (a Certificate LIST and the CPU it took) seen within {timeout:.0f} s "
                             "of its due time")
    end_cpu = [c for t, c in history if t <= burst_end][-1]
    split = stats.split_requests(delta)
    return {"resync_cpu_seconds": max(0.0, end_cpu - cw0 - idle * (burst_end - w0)),
            "resync_window_seconds": burst_end - w0, "resync_idle_cores": idle, "resync_period_seconds": period,
            "resync_certificate_lists": delta[("LIST", "certificates")],
            "resync_writes": sum(split["writes"].values())}


def _restart(cp: ControlPlane, workdir: Path, name: str, n: int) -> dict[str, Any]:
    """A fresh operator on n up-to-date certificates (the previous one stopped): start -> steady, its
    memory once idle, and the writes the API server served meanwhile."""
    before = cp.request_counts()
    op = Operator.start(cp, workdir / f"operator-{name}.log", wait_ready=False)
    try:
        steady = _wait_steady(op, n, timeout=600 + n / 10)
        time.sleep(2)  # let anything a reconcile might write land
        after = cp.request_counts()
        cpu = cpu_seconds(op.pid)
        op.wait_quiet()
        memory = _mb(op.memory())
        verbs = op.requests_by_verb()
    finally:
        op.stop()
    split = stats.split_requests(stats.counter_delta(after, before))
    return {"restart_seconds": steady["steady_seconds"], "restart_reconciled": steady["reconciled"],
            "restart_cpu_seconds": cpu, "restart_rss_steady_mb": memory["rss_mb"],
            "restart_rss_peak_mb": memory["hwm_mb"], "restart_writes": sum(split["writes"].values()),
            "restart_writes_by_resource": split["writes"],
            "restart_operator_writes": sum(v for k, v in verbs.items() if k in ("create", "patch", "apply", "update"))}


def _resync(cp: ControlPlane, workdir: Path, name: str, n: int, restart_seconds: float) -> dict[str, Any]:
    """One resync, measured on a fresh operator whose --resync-period leaves it time to settle first:
    twice the restart just measured, and 10 s; twice that again if it settled too late all the same."""
    period = float(max(20, int(2 * restart_seconds + 10)))
    for attempt in range(2):
        op = Operator.start(cp, workdir / f"operator-{name}-{attempt}.log", "--resync-period", f"{period:.0f}s",
                            wait_ready=False)
        try:
            _wait_steady(op, n, timeout=600 + n / 10)
            op.wait_quiet()
            if op.started + period - time.monotonic() >= 3.0:
                return measure_resync(cp, op, period, timeout=120 + restart_seconds + n / 100)
        finally:
            op.stop()
        progress(f"  the operator settled too close to its first resync ({period:.0f} s): again with twice that")
        period *= 2
    raise BenchError(f"the operator did not settle {period / 2:.0f} s before its first resync")


def _run(cfg: Config, workdir: Path, run: int, sizes: tuple[int, ...] | None = None,
         algorithm: str = "ECDSA") -> dict[str, dict[str, Any]]:
    cp = ControlPlane.start(workdir / f"cluster-scale-{algorithm.lower()}-{run}")
    op: Operator | None = None
    out: dict[str, dict[str, Any]] = {}
    try:
        cp.create_namespace(NAMESPACE)
        cp.apply_file(_write(workdir, f"scale-{run}-issuer", [manifests.self_signed_issuer(NAMESPACE)]))
        have = 0
        with CertificateWatch(cp, NAMESPACE) as watch:
            for n in sizes or cfg.scale_sizes:
                figures: dict[str, Any] = {"n": n, "created": n - have}
                if op is None:  # all namespaces, as deployed
                    op = Operator.start(cp, workdir / f"operator-scale-{run}-{n}.log", wait_ready=False)
                    op.wait_ready(timeout=600)
                progress(f"  {n:,}: creating {n - have:,} more certificates")
                started = time.monotonic()
                apply_seconds = 0.0
                for i, part in enumerate(chunks(list(range(have, n)), FILE_DOCUMENTS)):
                    path = _write(workdir, f"scale-{run}-{n}-{i}", manifests.leaves(NAMESPACE, part, algorithm, "self"))
                    apply_seconds += cp.apply_file(path)
                    path.unlink()
                watch.wait("Ready", watch.ready_count, n, 600 + (n - have), op, every=30)
                figures.update(create_seconds=time.monotonic() - started, apply_seconds=apply_seconds)
                have = n
                figures["quiet"] = op.wait_quiet(timeout=120 + n / 100)
                memory = _mb(op.memory())
                figures.update(rss_steady_mb=memory["rss_mb"], rss_peak_mb=memory["hwm_mb"])

                scrape_started = time.monotonic()
                text = op.metrics()
                figures.update(scrape_seconds=time.monotonic() - scrape_started, scrape_bytes=len(text),
                               scrape_mb=len(text) / 1e6,
                               scrape_series=sum(1 for line in text.splitlines() if line and line[0] != "#"),
                               rss_peak_after_scrape_mb=_mb(op.memory())["hwm_mb"])
                del text
                figures.update(list_all(cp, n))
                progress(f"  {n:,} Ready in {figures['create_seconds']:.1f} s: RSS {figures['rss_steady_mb']:.1f} "
                         f"MB, peak {figures['rss_peak_mb']:.1f} MB; /metrics {figures['scrape_mb']:.2f} MB in "
                         f"{figures['scrape_seconds']:.2f} s; certmint list -A {figures['list_seconds']:.2f} s")
                op.stop()
                op = None

                figures.update(_restart(cp, workdir, f"scale-{run}-{n}-restart", n))
                progress(f"  restart: steady after {figures['restart_seconds']:.1f} s, {figures['restart_writes']:.0f}"
                         f" writes, RSS {figures['restart_rss_steady_mb']:.1f} MB, peak "
                         f"{figures['restart_rss_peak_mb']:.1f} MB")
                figures.update(_resync(cp, workdir, f"scale-{run}-{n}-resync", n, figures["restart_seconds"]))
                progress(f"  one resync: {figures['resync_cpu_seconds']:.3f} s of operator CPU, done "
                         f"{figures['resync_window_seconds']:.1f} s after it was due "
                         f"({figures['resync_certificate_lists']:.0f} Certificate LIST requests, "
                         f"{figures['resync_writes']:.0f} writes)")
                out[str(n)] = figures
    finally:
        if op is not None:
            op.stop()
        cp.stop()
    return out


def plot(scale: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """A PNG of each figure against the number of certificates; segments flagged as not linear in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    by_size = {int(n): figures for n, figures in (scale.get("median") or {}).items()}
    sizes = sorted(by_size)
    flagged = {key: [s for s in segs if s.get("nonlinear")] for key, segs in (scale.get("slopes") or {}).items()}
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]] = (
        ("RSS (MB)", (("rss_steady_mb", "steady"), ("rss_peak_mb", "peak"),
                      ("restart_rss_steady_mb", "steady after restart"),
                      ("restart_rss_peak_mb", "peak after restart"))),
        ("restart, start -> steady (s)", (("restart_seconds", "restart"),)),
        ("one resync, operator CPU (s)", (("resync_cpu_seconds", "resync"),)),
        ("one /metrics scrape (s)", (("scrape_seconds", "scrape"),)),
        ("one /metrics scrape (MB)", (("scrape_mb", "scrape"),)),
        ("certmint list -A (s)", (("list_seconds", "list -A"),)),
    )
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (ylabel, series) in zip(axes.flat, panels, strict=True):
        for key, label in series:
            ys = [by_size[n].get(key) for n in sizes]
            xs = [n for n, y in zip(sizes, ys, strict=True) if y is not None]
            ax.plot(xs, [y for y in ys if y is not None], marker="o", markersize=3, label=label)
            for s in flagged.get(key, []):
                ax.plot([s["from"], s["to"]], [by_size[s["from"]][key], by_size[s["to"]][key]], color="red",
                        alpha=0.3, linewidth=7, solid_capstyle="round", zorder=0)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_title(ylabel, fontsize=9)
        ax.set_xlabel("certificates", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08 or 1.0)
        ax.set_xlim(0, sizes[-1] * 1.05 if sizes else 1.0)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    note = f"  (shaded red: more than {NONLINEAR}x the previous slope)" if any(flagged.values()) else ""
    fig.suptitle(title + note, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def scenario(cfg: Config, workdir: Path) -> dict[str, Any]:
    sizes = tuple(cfg.scale_sizes)
    runs: list[Mapping[str, Any]] = []
    for run in range(cfg.runs):
        progress(f"scale: run {run + 1}/{cfg.runs}, {' -> '.join(f'{n:,}' for n in sizes)} ECDSA certificates "
                 "(selfSigned) on one control plane; at each size memory, /metrics, list -A, restart, resync")
        runs.append(_run(cfg, workdir, run))
    median = stats.median_of_runs(runs)
    out: dict[str, Any] = {"sizes": list(sizes), "runs": runs, "median": median,
                           **analyse({int(n): figures for n, figures in median.items()})}
    largest = median[str(sizes[-1])]
    out["largest"] = largest
    out["restart_writes_max"] = max(figures.get("restart_writes", 0) for figures in median.values())
    out["nonlinear_count"] = len(out["nonlinear"])
    path = PLOT if sizes == DEFAULT_SIZES else workdir / "scale.png"
    out["plot"] = str(plot(out, path, f"certmint scale, {time.strftime('%Y-%m-%d')}, medians of {len(runs)} run(s)"))
    return out


def rsa_restart(cfg: Config, workdir: Path) -> dict[str, Any]:
    """The scale run's measurements at one size (10,000), with RSA-2048 keys: a restart must not
    load (or check) each RSA key at a cost, so it settles about as fast as with ECDSA."""
    n = cfg.rsa_restart_n
    runs: list[Mapping[str, Any]] = []
    for run in range(cfg.runs):
        progress(f"rsa-restart: run {run + 1}/{cfg.runs}, {n:,} RSA-2048 certificates (selfSigned), then a "
                 "restart, one resync, /metrics and list -A")
        runs.append(_run(cfg, workdir, run, (n,), "RSA")[str(n)])
    return {"n": n, "runs": runs, "median": stats.median_of_runs(runs)}


ROWS = [
    Row("rsa-restart: 10,000 RSA-2048 up to date, restart -> steady (s)", ("rsa-restart", "median", "restart_seconds"),
        "{:.1f}", "< 15", lambda v: v < 15),
    Row("rsa-restart: writes during the restart", ("rsa-restart", "median", "restart_writes"), "{:.0f}", "0",
        lambda v: v == 0),
    Row("scale: peak RSS at the largest size (MB)", ("scale", "largest", "rss_peak_mb"), "{:.1f}"),
    Row("scale: restart at the largest size, start -> steady (s)", ("scale", "largest", "restart_seconds"), "{:.1f}"),
    Row("scale: one resync at the largest size, operator CPU (s)", ("scale", "largest", "resync_cpu_seconds"),
        "{:.2f}"),
    Row("scale: API writes during a restart, worst size", ("scale", "restart_writes_max"), "{:.0f}", "0",
        lambda v: v == 0),
    Row("scale: segments not linear (> 1.5x the previous slope)", ("scale", "nonlinear_count"), "{:.0f}"),
]


def readme_block(results: Mapping[str, Any]) -> str:
    """The README's scale table for a run's results (the scale scenario's, with the run's date and commit)."""
    scale = report.get(results, "scenarios", "scale") or {}
    return section_block(render_table(scale, results))
