"""Pure helpers of the benchmarks: medians, regressions, Prometheus text, /proc files. No I/O here."""
from __future__ import annotations

import re
import statistics
from collections import Counter
from typing import Any, Iterable, Mapping

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY", "CREATE", "UPDATE"})
READ_VERBS = frozenset({"GET", "LIST", "WATCH"})
# Resources certmint reads or writes. Everything else the API server serves in a window (its own
# bootstrap controllers, discovery, /metrics scrapes) is reported apart as "other".
OURS = frozenset({"secrets", "certificates", "certificates/status", "issuers", "issuers/status",
                  "clusterissuers", "clusterissuers/status", "events"})
_LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median_of_runs(runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Key by key, the median of the runs' numbers; nested dicts are handled the same way.

    A key missing from some runs is the median of the runs that have it; booleans are
    all() across the runs (a check passes only if it passed every time); other values
    (strings, lists) are taken from the last run that has them.
    """
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run if k not in keys)
    out: dict[str, Any] = {}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, bool) for v in values):
            out[key] = all(values)
        elif all(isinstance(v, (int, float)) or v is None for v in values):
            out[key] = median(values)
        elif all(isinstance(v, Mapping) for v in values):
            out[key] = median_of_runs(values)
        else:
            out[key] = values[-1]
    return out


def efficiency(ours_seconds: float, crypto_floor_seconds: float, api_floor_seconds: float) -> float:
    """Floor over ours: 1.0 means as fast as the slower of crypto alone and API alone."""
    if ours_seconds <= 0:
        raise ValueError("a run cannot take no time")
    return max(crypto_floor_seconds, api_floor_seconds) / ours_seconds


def ms_per_issuance(cpu_seconds: dict[str, float], n: int) -> dict[str, float]:
    """CPU seconds by process over n issuances -> milliseconds per issuance, with their total."""
    out = {name: 1000 * seconds / n for name, seconds in cpu_seconds.items()}
    out["total"] = sum(out.values())
    return out


def linear_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(xs) < 2:
        raise ValueError("a slope needs at least two points")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("all xs are equal")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def slope_per_hour_second_half(samples: list[tuple[float, float]]) -> float:
    """samples: (seconds since start, MB). The slope in MB/hour over the later half of the time span."""
    if len(samples) < 4:
        raise ValueError("need at least four samples")
    start, end = samples[0][0], samples[-1][0]
    middle = start + (end - start) / 2
    half = [(t, v) for t, v in samples if t >= middle]
    if len(half) < 2:
        half = samples[-2:]
    return linear_slope([t / 3600 for t, _ in half], [v for _, v in half])


# --- Prometheus text -----------------------------------------------------------------------------


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric `name` (exact name, with labels or without) as (labels, value)."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        rest = line[len(name):]
        if rest.startswith("{"):
            labels_text, _, value = rest[1:].rpartition("}")
            labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABELS.findall(labels_text)}
        elif rest.startswith(" "):
            labels, value = {}, rest
        else:
            continue  # a longer name with this prefix
        out.append((labels, float(value.split()[0])))
    return out


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include all of `labels`."""
    return sum(v for ls, v in samples(text, name) if all(ls.get(k) == want for k, want in labels.items()))


SYNC_CALLS = ("certmanager_controller_sync_call_count", "certmanager_controller_sync_call_count_total")


def sync_calls(text: str, controller: str = "Certificate") -> float:
    """Reconciles of one controller: cert-manager's unsuffixed counter name, or the _total form of
    prometheus_client's plain Counter (the operator has exposed both over time)."""
    return sum(metric_sum(text, name, controller=controller) for name in SYNC_CALLS)


def count_series(text: str, name: str, value: float, **labels: str) -> int:
    """How many series of `name` with all of `labels` have exactly `value`."""
    return sum(1 for ls, v in samples(text, name) if v == value and all(ls.get(k) == w for k, w in labels.items()))


def _resource(labels: Mapping[str, str]) -> str:
    resource, sub = labels.get("resource", ""), labels.get("subresource", "")
    return f"{resource}/{sub}" if resource and sub else resource


def request_counts(text: str) -> Counter:
    """Requests the API server has started, by (VERB, resource[/subresource]).

    apiserver_request_total counts a request when it ends, so a watch that is still open
    is not in it yet: the open long-running requests are added from
    apiserver_longrunning_requests, so that before/after differences count every watch
    opened in between. Requests on no resource (discovery, /metrics, /readyz) are left out.
    """
    counts: Counter = Counter()
    for labels, value in samples(text, "apiserver_request_total"):
        if labels.get("resource"):
            counts[(labels.get("verb", ""), _resource(labels))] += value
    for labels, value in samples(text, "apiserver_longrunning_requests"):
        if labels.get("resource"):
            counts[(labels.get("verb", ""), _resource(labels))] += value
    return counts


def counter_delta(after: Mapping, before: Mapping) -> Counter:
    """after - before, keeping negative differences out (a counter never goes down)."""
    out: Counter = Counter()
    for key in set(after) | set(before):
        d = after.get(key, 0) - before.get(key, 0)
        if d > 0:
            out[key] = d
    return out


def split_requests(delta: Mapping[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    """A request delta as {"writes": {resource: n}, "reads": {"VERB resource": n}}, leases left out
    (the API server renews its own identity lease every few seconds)."""
    writes: Counter = Counter()
    reads: Counter = Counter()
    for (verb, resource), n in delta.items():
        if resource == "leases" or not n:
            continue
        if verb in WRITE_VERBS:
            writes[resource] += n
        elif verb in READ_VERBS:
            reads[f"{verb} {resource}"] += n
    return {"writes": dict(writes), "reads": dict(reads)}


def per_issuance(counts: Mapping[str, float], n: int) -> dict[str, float]:
    return {k: v / n for k, v in sorted(counts.items())}


def api_cost(delta: Mapping[tuple[str, str], float], issued: int, applied_by_client: int = 0) -> dict[str, Any]:
    """Writes and reads per issuance, from an API server request delta over an issuance window.

    applied_by_client: certificate writes the benchmark itself made in the window (the
    `kubectl apply` of the Certificates), subtracted before anything is divided.
    """
    if issued <= 0:
        raise ValueError("no issuance to divide by")
    split = split_requests(delta)
    writes = dict(split["writes"])
    if applied_by_client:
        left = writes.get("certificates", 0) - applied_by_client
        if left > 0:
            writes["certificates"] = left
        else:
            writes.pop("certificates", None)
    ours = {k: v for k, v in writes.items() if k in OURS}
    other = {k: v for k, v in writes.items() if k not in OURS}
    reads_ours = {k: v for k, v in split["reads"].items() if k.split(" ", 1)[1] in OURS}
    reads_other = {k: v for k, v in split["reads"].items() if k.split(" ", 1)[1] not in OURS}
    events = ours.get("events", 0)
    return {
        "writes_per_issuance_excl_events": (sum(ours.values()) - events) / issued,
        "events_per_issuance": events / issued,
        "reads_per_issuance": sum(reads_ours.values()) / issued,
        "writes_by_resource": per_issuance(ours, issued),
        "reads_by_request": per_issuance(reads_ours, issued),
        "other_writes": other,
        "other_reads": reads_other,
    }


# --- /proc ---------------------------------------------------------------------------------------


def parent_pid(stat_text: str) -> int:
    """The parent's PID from a /proc/PID/stat line (field 4)."""
    return int(stat_text.rsplit(")", 1)[1].split()[1])


def cpu_ticks(stat_text: str) -> int:
    """utime + stime from a /proc/PID/stat line (fields 14 and 15; the name may hold spaces)."""
    fields = stat_text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields[0] is field 3 (state)


def status_kib(status_text: str, field: str) -> int:
    """A 'kB' field of /proc/PID/status, such as VmRSS or VmHWM."""
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def meminfo_total_gib(meminfo_text: str) -> float:
    return status_kib(meminfo_text, "MemTotal") / 1024 / 1024
