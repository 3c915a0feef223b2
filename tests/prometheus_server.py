"""A real Prometheus server for the tests: Debian's `prometheus` binary on 127.0.0.1.

It scrapes the targets it is given every second, evaluates rules every second, keeps its
TSDB in a temporary directory, and is queried through its HTTP API. A missing binary
fails the test that needs it, saying how to install it: nothing is skipped.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

import yaml

import localcluster

T = TypeVar("T")


# Seed 001's alert rules, verbatim: they use cert_manager_..., which only the recording rule provides.
SEED_001_RULES = """\
groups:
  - name: virtrigaud.certificates
    rules:
      - alert: CertificateExpiringSoon
        expr: (cert_manager_certificate_expiration_timestamp_seconds - time()) / 86400 < 30
        for: 1h
        labels:
          severity: warning
        annotations:
          summary: "Certificate expiring soon"
          description: "Certificate {{ $labels.name }} expires in less than 30 days"

      - alert: CertificateExpired
        expr: cert_manager_certificate_expiration_timestamp_seconds < time()
        for: 0m
        labels:
          severity: critical
        annotations:
          summary: "Certificate expired"
          description: "Certificate {{ $labels.name }} has expired"
"""


class PrometheusError(AssertionError):
    pass


def binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusError("prometheus not found on PATH: run `make system-deps` "
                              "(hack/install-system-deps.sh installs Debian's prometheus package)")
    return found


def for_durations(rules: dict, duration: str) -> dict:
    """A copy of a rule file with every alert's `for:` replaced; expressions, labels and annotations untouched."""
    out = {"groups": []}
    for group in rules["groups"]:
        new = {**group, "rules": []}
        for rule in group["rules"]:
            new["rules"].append({**rule, "for": duration} if "alert" in rule else dict(rule))
        out["groups"].append(new)
    return out


class Prometheus:
    def __init__(self, directory: Path, scrape_configs: list[dict], rules: list[dict] | None = None,
                 interval: str = "1s"):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = localcluster.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "prometheus.log"
        rule_files = []
        for i, rule_file in enumerate(rules or []):
            path = directory / f"rules-{i}.yaml"
            path.write_text(yaml.safe_dump(rule_file, sort_keys=False))
            rule_files.append(str(path))
        self.config = directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": rule_files,
            "scrape_configs": scrape_configs,
        }, sort_keys=False))
        self.proc: subprocess.Popen | None = None

    # --- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> "Prometheus":
        args = [binary(), f"--config.file={self.config}", f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=localcluster._die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "Prometheus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    # --- the HTTP API --------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> dict | list:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise PrometheusError(f"GET {url}: {e.code} {e.read().decode(errors='replace')}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The one value an instant query returns, or None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr} returned {len(result)} series: {result}"
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict]:
        """Active alerts (pending and firing): [{"labels", "annotations", "state", "activeAt", "value"}]."""
        return self.api("alerts")["alerts"]

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]

    def last_evaluation(self) -> float:
        """Wall-clock time at which every rule group had last been evaluated (the oldest of them)."""
        groups = self.api("rules")["groups"]
        times = [_parse_time(g.get("lastEvaluation")) for g in groups]
        return min(times) if times else 0.0

    def wait_for_evaluation_after(self, moment: float, timeout: float = 15) -> None:
        """Until every rule group has been evaluated after `moment` (time.time())."""
        wait_until(lambda: self.last_evaluation() > moment, timeout, "a rule evaluation after the last scrape",
                   self.log_tail)


def _parse_time(value: str | None) -> float:
    """RFC 3339 with nanoseconds, as Prometheus writes it, to a Unix time."""
    if not value or value.startswith("0001-"):
        return 0.0
    import datetime as dt
    main, _, rest = value.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())
    zone = rest[len(fraction):] if rest else main[19:]
    main = main[:19]
    zone = "+00:00" if zone in ("Z", "") else zone
    t = dt.datetime.fromisoformat(main + zone)
    return t.timestamp() + (float("0." + fraction) if fraction else 0.0)


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               explain: Callable[[], str] | None = None, interval: float = 0.25) -> T:
    """Poll predicate until it returns something truthy; fail with what was awaited, and why if known."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)
