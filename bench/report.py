"""The results table, results.json and the history row in bench/README.md. Pure: text in, text out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

README_MARKER = "<!-- bench history: `python -m bench` appends one row per run below -->"
HISTORY_HEADER = ("| date (UTC) | commit | machine | mode | ECDSA certs/s (floor/ours) "
                  "| RSA certs/s (operator cores) | writes/issuance + events | reads/issuance "
                  "| peak RSS 1k / 10k certs (MB) | RSS Δ unrelated Secrets (MB) | restart s (writes) "
                  "| storm drain s (missed) | soak slope MB/h |")
HISTORY_RULE = "|" + "---|" * HISTORY_HEADER.count(" | ") + "---|"


def get(results: Mapping[str, Any], *path: str) -> Any:
    """results[path[0]][path[1]]...; None when any step is missing."""
    node: Any = results
    for step in path:
        if not isinstance(node, Mapping) or step not in node:
            return None
        node = node[step]
    return node


@dataclass(frozen=True)
class Row:
    label: str
    path: tuple[str, ...]  # under results["scenarios"]
    fmt: str = "{:.2f}"
    target: str = ""
    check: Callable[[float], bool] | None = None

    def value(self, scenarios: Mapping[str, Any]) -> Any:
        return get(scenarios, *self.path)

    def verdict(self, value: Any) -> str:
        if self.check is None or value is None:
            return ""
        return "ok" if self.check(value) else "MISSED"


def _tp(alg: str, *rest: str) -> tuple[str, ...]:
    return ("throughput", alg, "median", *rest)


ROWS: list[Row] = [
    Row("ECDSA: certificates/s (apply -> all Ready)", _tp("ecdsa", "per_second"), "{:.1f}"),
    Row("ECDSA: time, apply -> all Ready (s)", _tp("ecdsa", "seconds")),
    Row("ECDSA: of which kubectl apply alone (s)", _tp("ecdsa", "apply_seconds")),
    Row("ECDSA: last Ready after kubectl apply returned (s)", _tp("ecdsa", "after_apply_seconds"), "{:.2f}",
        "<= 0.5", lambda v: v <= 0.5),
    Row("ECDSA: floor (a) crypto alone (s)", _tp("ecdsa", "crypto_floor_seconds"), "{:.3f}"),
    Row("ECDSA: floor (b) API alone (s)", _tp("ecdsa", "api_floor_seconds")),
    Row("ECDSA: floor / ours [max(a,b) / time]", _tp("ecdsa", "efficiency"), "{:.2f}", ">= 0.70",
        lambda v: v >= 0.70),
    Row("ECDSA: (b) at 8 in flight, the operator's worker count (s)", _tp("ecdsa", "two_writes_at_8_seconds")),
    Row("ECDSA: the operator's 5 requests/issuance, 8 in flight (s)", _tp("ecdsa", "operator_pattern_seconds")),
    Row("ECDSA: floor (c) kubectl apply alone, no operator (s)", _tp("ecdsa", "apply_floor_seconds")),
    Row("ECDSA: max(a,b,c) / ours", _tp("ecdsa", "efficiency_with_apply_floor")),
    Row("ECDSA: backlog, operator start -> all Ready (s)", _tp("ecdsa", "backlog", "seconds")),
    Row("ECDSA: backlog certificates/s", _tp("ecdsa", "backlog", "per_second"), "{:.1f}"),
    Row("ECDSA: max(a,b) / backlog", _tp("ecdsa", "backlog_efficiency"), "{:.2f}", ">= 0.85",
        lambda v: v >= 0.85),
    Row("ECDSA: backlog, operator start -> first Ready (s)", _tp("ecdsa", "backlog", "first_ready_seconds")),
    Row("ECDSA: floor (b) CPU/issuance, API server + etcd + client (ms)",
        _tp("ecdsa", "api_floor", "cpu_ms_per_issuance", "total")),
    Row("ECDSA:   of which kube-apiserver (ms)", _tp("ecdsa", "api_floor", "cpu_ms_per_issuance", "apiserver")),
    Row("ECDSA: backlog CPU/issuance after the first Ready, all processes (ms)",
        _tp("ecdsa", "backlog", "cpu_ms_per_issuance", "total")),
    Row("ECDSA:   of which the operator (ms)", _tp("ecdsa", "backlog", "cpu_ms_per_issuance", "operator")),
    Row("ECDSA:   of which kube-apiserver (ms)", _tp("ecdsa", "backlog", "cpu_ms_per_issuance", "apiserver")),
    Row("ECDSA:   of which etcd (ms)", _tp("ecdsa", "backlog", "cpu_ms_per_issuance", "etcd")),
    Row("ECDSA: CPU ceiling of max(a,b) / backlog, floor CPU / backlog CPU", _tp("ecdsa", "backlog_cpu_ceiling")),
    Row("ECDSA: reconciles per issuance", _tp("ecdsa", "reconciles_per_issuance"), "{:.2f}", "1.0-1.1",
        lambda v: 1.0 <= v <= 1.1),
    Row("ECDSA: restart with these N up to date, start -> steady (s)", _tp("ecdsa", "restart_seconds")),
    Row("ECDSA: operator CPU (cores)", _tp("ecdsa", "cpu_cores", "operator")),
    Row("ECDSA: kube-apiserver CPU (cores)", _tp("ecdsa", "cpu_cores", "apiserver")),
    Row("ECDSA: etcd CPU (cores)", _tp("ecdsa", "cpu_cores", "etcd")),
    Row("RSA-2048: certificates/s (apply -> all Ready)", _tp("rsa", "per_second"), "{:.1f}"),
    Row("RSA-2048: time, apply -> all Ready (s)", _tp("rsa", "seconds")),
    Row("RSA-2048: floor (a) crypto alone (s)", _tp("rsa", "crypto_floor_seconds")),
    Row("RSA-2048: floor (b) API alone (s)", _tp("rsa", "api_floor_seconds")),
    Row("RSA-2048: floor / ours", _tp("rsa", "efficiency")),
    Row("RSA-2048: backlog, operator start -> all Ready (s)", _tp("rsa", "backlog", "seconds")),
    Row("RSA-2048: max(a,b) / backlog", _tp("rsa", "backlog_efficiency")),
    Row("RSA-2048: reconciles per issuance", _tp("rsa", "reconciles_per_issuance")),
    Row("RSA-2048: restart with these N up to date, start -> steady (s)", _tp("rsa", "restart_seconds")),
    Row("RSA-2048: operator CPU in the backlog run (cores)", _tp("rsa", "backlog", "cpu_cores", "operator")),
    Row("RSA-2048: operator CPU (cores)", _tp("rsa", "cpu_cores", "operator"), "{:.2f}", "> 1.6 (both cores)",
        lambda v: v > 1.6),
    Row("RSA-2048: operator CPU per issuance, keys included (ms)", _tp("rsa", "cpu_ms_per_issuance"), "{:.1f}",
        "<= 45", lambda v: v <= 45),
    Row("API: writes per issuance, events excluded", _tp("ecdsa", "writes_per_issuance_excl_events"), "{:.2f}",
        "<= 2", lambda v: v <= 2.0 + 1e-9),
    Row("API:   of which Secrets", _tp("ecdsa", "writes_by_resource", "secrets")),
    Row("API:   of which certificates/status", _tp("ecdsa", "writes_by_resource", "certificates/status")),
    Row("API: events per issuance", _tp("ecdsa", "events_per_issuance"), "{:.2f}", "(reported apart)"),
    Row("API: reads per issuance (GET/LIST/WATCH)", _tp("ecdsa", "reads_per_issuance")),
    Row("API:   of which GET secrets", _tp("ecdsa", "reads_by_request", "GET secrets")),
    Row("memory: peak RSS, small N Ready (MB)", ("memory", "median", "small", "hwm_mb"), "{:.1f}"),
    Row("memory: peak RSS, large N Ready (MB)", ("memory", "median", "large", "hwm_mb"), "{:.1f}", "<= 150",
        lambda v: v <= 150),
    Row("memory: RSS, large N Ready, idle (MB)", ("memory", "median", "large", "rss_mb"), "{:.1f}"),
    Row("memory: RSS change after unrelated Secrets (MB)", ("memory", "median", "foreign_growth_mb"), "{:+.1f}",
        "no growth (<= 5)", lambda v: v <= 5),
    Row("memory: peak RSS after one /metrics scrape (MB)", ("memory", "median", "metrics_scrape", "hwm_mb"),
        "{:.1f}"),
    Row("memory: peak RSS after restart, large N (MB)", ("memory", "median", "restart", "hwm_mb"), "{:.1f}"),
    Row("restart: start -> steady, large N (s)", ("memory", "median", "restart", "steady_seconds"), "{:.1f}"),
    Row("restart: reconciles per certificate", ("memory", "median", "restart", "reconciles_per_certificate"),
        "{:.2f}"),
    Row("restart: writes", ("memory", "median", "restart", "writes"), "{:.0f}", "0", lambda v: v == 0),
    Row("storm: renewed of N", ("storm", "median", "renewed"), "{:.0f}"),
    Row("storm: missed renewals", ("storm", "median", "missed"), "{:.0f}", "0", lambda v: v == 0),
    Row("storm: renewed before renewalTime", ("storm", "median", "early"), "{:.0f}", "0", lambda v: v == 0),
    Row("storm: spread of renewalTimes (s)", ("storm", "median", "renewal_spread_seconds"), "{:.1f}"),
    Row("storm: drain, first due -> all renewed (s)", ("storm", "median", "drain_seconds"), "{:.1f}"),
    Row("storm: lag behind renewalTime, median (s)", ("storm", "median", "lag_median_seconds"), "{:.2f}", "< 1",
        lambda v: v < 1.0),
    Row("storm: lag behind renewalTime, max (s)", ("storm", "median", "lag_max_seconds"), "{:.1f}"),
    Row("soak: RSS slope, second half (MB/h)", ("soak", "rss_slope_mb_per_hour"), "{:+.2f}", "flat (|x| <= 5)",
        lambda v: abs(v) <= 5),
    Row("soak: renewals (expected)", ("soak", "renewals"), "{:.0f}"),
    Row("soak: most renewals overdue > 60 s at once", ("soak", "max_overdue"), "{:.0f}", "0", lambda v: v == 0),
]


def _fmt(fmt: str, value: Any) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def table(results: Mapping[str, Any]) -> str:
    """The rows that have a value, aligned, with their targets and verdicts."""
    scenarios = results.get("scenarios") or {}
    lines = []
    for row in ROWS:
        value = row.value(scenarios)
        if value is None:
            continue
        text = _fmt(row.fmt, value)
        if row.label.startswith("soak: renewals") and get(scenarios, "soak", "expected_renewals") is not None:
            text += f" ({get(scenarios, 'soak', 'expected_renewals')})"
        lines.append((row.label, text, row.target, row.verdict(value)))
    if not lines:
        return "(no results)"
    widths = [max(len(line[i]) for line in lines + [("figure", "median", "target", "")]) for i in range(4)]
    out = [f"{'figure':<{widths[0]}}  {'median':>{widths[1]}}  {'target':<{widths[2]}}  verdict",
           f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * widths[2]}  -------"]
    for label, value, target, verdict in lines:
        out.append(f"{label:<{widths[0]}}  {value:>{widths[1]}}  {target:<{widths[2]}}  {verdict}".rstrip())
    return "\n".join(out)


def missed(results: Mapping[str, Any]) -> list[str]:
    scenarios = results.get("scenarios") or {}
    return [row.label for row in ROWS if row.verdict(row.value(scenarios)) == "MISSED"]


def _pair(a: Any, b: Any, fa: str, fb: str) -> str:
    if a is None:
        return "-"
    return _fmt(fa, a) + (f" ({_fmt(fb, b)})" if b is not None else "")


def _joined(sep: str, *parts: tuple[str, Any]) -> str:
    if all(v is None for _, v in parts):
        return "-"
    return sep.join(_fmt(f, v) for f, v in parts)


def history_row(results: Mapping[str, Any]) -> str:
    """One markdown row for bench/README.md's history table."""
    s = results.get("scenarios") or {}
    m = results.get("machine") or {}
    machine = f"{m.get('cores', '?')} cores, {m.get('memory_gib', 0):.0f} GiB"
    mode = results.get("mode", "")
    cells = [
        results.get("date", ""),
        f"`{results.get('commit', '?')}`",
        machine,
        mode,
        _pair(get(s, *_tp("ecdsa", "per_second")), get(s, *_tp("ecdsa", "efficiency")), "{:.0f}", "{:.2f}"),
        _pair(get(s, *_tp("rsa", "per_second")), get(s, *_tp("rsa", "cpu_cores", "operator")), "{:.1f}", "{:.2f}"),
        _joined(" + ", ("{:.2f}", get(s, *_tp("ecdsa", "writes_per_issuance_excl_events"))),
                ("{:.2f}", get(s, *_tp("ecdsa", "events_per_issuance")))),
        _fmt("{:.2f}", get(s, *_tp("ecdsa", "reads_per_issuance"))),
        _joined(" / ", ("{:.0f}", get(s, "memory", "median", "small", "hwm_mb")),
                ("{:.0f}", get(s, "memory", "median", "large", "hwm_mb"))),
        _fmt("{:+.1f}", get(s, "memory", "median", "foreign_growth_mb")),
        _pair(get(s, "memory", "median", "restart", "steady_seconds"), get(s, "memory", "median", "restart", "writes"),
              "{:.1f}", "{:.0f}"),
        _pair(get(s, "storm", "median", "drain_seconds"), get(s, "storm", "median", "missed"), "{:.1f}", "{:.0f}"),
        _fmt("{:+.2f}", get(s, "soak", "rss_slope_mb_per_hour"))
        + (f" ({get(s, 'soak', 'minutes'):g} min)" if get(s, "soak") else ""),
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def append_history(readme: str, row: str) -> str:
    """readme with row added at the end of the history table (created after the marker if missing)."""
    lines = readme.splitlines()
    if README_MARKER not in lines:
        tail = "" if readme.endswith("\n") or not readme else "\n"
        return readme + tail + f"\n## History\n\n{README_MARKER}\n\n{HISTORY_HEADER}\n{HISTORY_RULE}\n{row}\n"
    at = lines.index(README_MARKER) + 1
    while at < len(lines) and not lines[at].startswith("|"):
        at += 1
    if at == len(lines):
        lines[lines.index(README_MARKER) + 1:lines.index(README_MARKER) + 1] = ["", HISTORY_HEADER, HISTORY_RULE]
        at = lines.index(HISTORY_RULE) + 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines.insert(at, row)
    return "\n".join(lines) + "\n"


def merge_results(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict:
    """results.json keeps the latest result of every scenario: a run of some scenarios replaces only
    those. Each scenario carries the date, commit and mode it was measured with."""
    merged = dict(previous or {})
    scenarios = dict(merged.get("scenarios") or {})
    for name, result in (current.get("scenarios") or {}).items():
        scenarios[name] = {**result, "measured": {k: current.get(k) for k in ("date", "commit", "mode", "machine",
                                                                              "load_average")}}
    merged.update({k: v for k, v in current.items() if k != "scenarios"})
    merged["scenarios"] = scenarios
    return merged
