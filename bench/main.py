"""`python -m bench`: run the scenarios, print the table, write bench/results.json, append to bench/README.md."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

from bench import crl, recovery, report, scale, stats, stepca
from bench.kube import REPO, BenchError, progress
from bench.scenarios import ALIASES, SCENARIOS, Config

SCENARIOS = {**SCENARIOS, "stepca": stepca.scenario}  # an external CA; runs only with --only stepca
report.ROWS.extend(stepca.ROWS)
SCENARIOS["crl"] = crl.scenario  # pure CPU, no cluster; runs only with --only crl
report.ROWS.extend(crl.ROWS)
SCENARIOS["recovery"] = recovery.scenario  # kills and freezes its control plane; runs only with --only recovery
report.ROWS.extend(recovery.ROWS)
SCENARIOS["scale"] = scale.scenario  # 1,000 -> 50,000 certificates on one control plane; runs only with --only scale
SCENARIOS["rsa-restart"] = scale.rsa_restart  # 10,000 RSA-2048 certificates restarted; only with --only rsa-restart
report.ROWS.extend(scale.ROWS)

HERE = Path(__file__).resolve().parent
DEFAULT_ORDER = ("throughput", "memory", "storm")  # soak only when asked: it takes an hour


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small N and 2 runs: proves the benchmark works, in minutes")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)} "
                        f"(aliases: {', '.join(f'{k}={v}' for k, v in ALIASES.items() if k != v)})")
    p.add_argument("--soak", action="store_true", help="also run the soak (an hour by default)")
    p.add_argument("--soak-minutes", type=float, default=None, help="soak length in minutes (default 60; quick 3)")
    p.add_argument("--runs", type=int, default=None, help="runs per scenario; figures are their medians "
                   "(default 3; quick 2)")
    p.add_argument("--profile", action="store_true",
                   help="sample the operator with py-spy during the timed windows (bench/profiles/)")
    p.add_argument("--output", type=Path, default=None,
                   help="results file (default bench/results.json; quick: bench/results-quick.json)")
    p.add_argument("--no-history", action="store_true", help="do not append a row to bench/README.md")
    p.add_argument("--keep", action="store_true", help="keep the work directory (control-plane data, operator logs)")
    p.add_argument("--scale-sizes", type=_sizes, default=None, metavar="N,N,...",
                   help="certificate counts of --only scale (default "
                        f"{','.join(str(n) for n in scale.DEFAULT_SIZES)}; other sizes leave bench/README.md and "
                        "bench/scale.png alone: the plot goes to the work directory)")
    return p.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return scale.parse_sizes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def selected(args: argparse.Namespace) -> list[str]:
    if args.only:
        names = []
        for raw in args.only:
            name = ALIASES.get(raw, raw)
            if name not in SCENARIOS:
                raise SystemExit(f"unknown scenario {raw!r}: choose from {', '.join(SCENARIOS)}")
            if name not in names:
                names.append(name)
        return names
    return list(DEFAULT_ORDER) + (["soak"] if args.soak else [])


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory_gib = stats.meminfo_total_gib(Path("/proc/meminfo").read_text())
    except OSError:
        memory_gib = 0.0
    return {"cores": os.cpu_count(), "memory_gib": round(memory_gib, 1), "cpu": model,
            "python": platform.python_version(), "kernel": platform.release()}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


CODE = ("operator", "crds", "pyproject.toml")  # what the measured processes run


def commit() -> str:
    """HEAD, with -dirty when the operator's code differs from it."""
    sha = _git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("-dirty" if _git("status", "--porcelain", "--", *CODE) else "")


def code_version() -> str:
    """Changes when the operator's code does (a commit or an edit), not when only docs or tests do."""
    trees = " ".join(_git("rev-parse", f"HEAD:{path}") for path in CODE)
    return trees + " " + _git("diff", "HEAD", "--", *CODE)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = selected(args)
    overrides = {}
    if args.runs is not None:
        if args.runs < 1:
            raise SystemExit("--runs must be at least 1")
        overrides["runs"] = args.runs
    if args.soak_minutes is not None:
        overrides["soak_minutes"] = args.soak_minutes
    if args.scale_sizes is not None:
        overrides["scale_sizes"] = args.scale_sizes
    if args.profile:
        overrides["profile_dir"] = HERE / "profiles" / time.strftime("%Y%m%d-%H%M%S")
    cfg = Config.quick(**overrides) if args.quick else Config(**overrides)
    if cfg.runs < 3 and not args.quick:
        progress(f"note: {cfg.runs} run(s) per scenario; the figures are meant as medians of at least 3")

    start_code = code_version()
    workdir = Path(tempfile.mkdtemp(prefix="certmint-bench-"))
    mode = ("quick" if args.quick else "full") + (f", only {'+'.join(names)}" if args.only else "") \
        + (f", soak {cfg.soak_minutes:g} min (1 run)" if "soak" in names else "") \
        + (f", {cfg.runs} runs" if set(names) - {"soak"} else "")
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit(),
        "machine": machine(),
        "mode": mode,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
        "load_average": {"start": list(os.getloadavg())},
        "scenarios": {},
        "errors": {},
    }
    progress(f"certmint bench ({mode}) at {results['commit']} on {results['machine']['cores']} cores, "
             f"{results['machine']['memory_gib']} GiB; work directory {workdir}")
    progress(f"load average now {os.getloadavg()[0]:.2f}: other work on this machine makes the figures noisy")
    started = time.monotonic()
    try:
        for name in names:
            t = time.monotonic()
            try:
                results["scenarios"][name] = SCENARIOS[name](cfg, workdir)
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                results["errors"][name] = f"{type(e).__name__}: {e}"
                progress(f"{name} FAILED: {e}")
                traceback.print_exc()
            progress(f"{name} took {(time.monotonic() - t) / 60:.1f} min")
    finally:
        if args.keep:
            progress(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load_average"]["end"] = list(os.getloadavg())
    end_commit = commit()
    if code_version() != start_code:  # the operator's code changed under a running benchmark
        results["commit_at_end"] = end_commit
        results["mode"] += f"; operator code changed to {end_commit} during the run"
        progress(f"warning: the operator's code changed during the run ({results['commit']} -> {end_commit}): "
                 "operator processes started after the change ran the new code")
    results["wall_minutes"] = round((time.monotonic() - started) / 60, 1)

    print()
    print(f"certmint bench  {results['date']} UTC  commit {results['commit']}  "
          f"{results['machine']['cores']} cores, {results['machine']['memory_gib']} GiB  ({results['mode']})")
    print(f"load average at start {results['load_average']['start'][0]:.2f}, at end "
          f"{results['load_average']['end'][0]:.2f}")
    print(report.table(results))
    if "scale" in results["scenarios"]:
        print()
        print(scale.summary(results["scenarios"]["scale"]))
    for name, error in results["errors"].items():
        print(f"{name}: FAILED: {error}")

    output = args.output or HERE / ("results-quick.json" if args.quick else "results.json")
    previous = None
    if output.exists():
        try:
            previous = json.loads(output.read_text())
        except ValueError:
            previous = None
    if results["scenarios"]:
        output.write_text(json.dumps(report.merge_results(previous, results), indent=2, default=str) + "\n")
        print(f"\nresults: {output}")
        if not args.quick and not args.no_history:
            readme = HERE / "README.md"
            text = readme.read_text() if readme.exists() else ""
            readme.write_text(report.append_history(text, report.history_row(results)))
            print(f"history row appended to {readme}")
            if "scale" in results["scenarios"] and cfg.scale_sizes == scale.DEFAULT_SIZES:
                readme.write_text(scale.rewrite_section(readme.read_text(), scale.readme_block(results)))
                print(f"scale table written to {readme}")
    return 1 if results["errors"] else 0
