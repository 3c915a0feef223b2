"""The pure parts of bench/ (statistics, Prometheus and /proc parsing, API cost, the report), so the
benchmark code does not rot between the runs that use it. No cluster and no timing here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, where bench/ lives

from bench import manifests, profile, report, stats  # noqa: E402
from bench.main import parse_args, selected  # noqa: E402
from bench.scenarios import Config  # noqa: E402
from certmint.model import parse_certificate_spec  # noqa: E402


def test_median_ignores_missing_values():
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, None, 1, 2, 3]) == 2.5
    assert stats.median([]) is None
    assert stats.median([None]) is None


def test_median_of_runs_goes_key_by_key_and_into_nested_dicts():
    runs = [
        {"seconds": 10.0, "cpu": {"operator": 1.0, "etcd": 0.2}, "ok": True, "mode": "a"},
        {"seconds": 30.0, "cpu": {"operator": 3.0}, "ok": False, "mode": "b", "only_here": 5},
        {"seconds": 20.0, "cpu": {"operator": 2.0, "etcd": 0.4}, "ok": True, "mode": "c"},
    ]
    m = stats.median_of_runs(runs)
    assert m["seconds"] == 20.0
    assert m["cpu"] == {"operator": 2.0, "etcd": pytest.approx(0.3)}
    assert m["ok"] is False  # a check passes only if it passed every run
    assert m["mode"] == "c"
    assert m["only_here"] == 5


def test_cpu_per_issuance_is_in_milliseconds_with_its_total():
    per = stats.ms_per_issuance({"apiserver": 3.0, "etcd": 0.5}, 1000)
    assert per == pytest.approx({"apiserver": 3.0, "etcd": 0.5, "total": 3.5})


def test_efficiency_is_the_slower_floor_over_our_time():
    assert stats.efficiency(10.0, 2.0, 7.0) == pytest.approx(0.7)
    assert stats.efficiency(4.0, 4.0, 1.0) == 1.0
    with pytest.raises(ValueError):
        stats.efficiency(0.0, 1.0, 1.0)


def test_linear_slope_and_the_second_half():
    assert stats.linear_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        stats.linear_slope([1, 1], [1, 2])
    # 100 MB flat for half an hour, then +10 MB over the next half hour: 20 MB/h in the second half
    samples = [(t, 100.0) for t in range(0, 1800, 30)] + [(t, 100.0 + (t - 1800) / 180) for t in range(1800, 3601, 30)]
    assert stats.slope_per_hour_second_half(samples) == pytest.approx(20.0)
    flat = [(t, 80.0 + (0.1 if (t // 30) % 2 else -0.1)) for t in range(0, 3601, 30)]
    assert abs(stats.slope_per_hour_second_half(flat)) < 0.5


APISERVER_METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 20
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="certmint.io",resource="certificates",scope="resource",subresource="status",verb="PATCH",version="v1"} 21
apiserver_request_total{code="200",component="apiserver",dry_run="",group="certmint.io",resource="certificates",scope="resource",subresource="",verb="APPLY",version="v1"} 20
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 21
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 99
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="cluster",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_total_extra{resource="secrets",verb="GET"} 1000
# HELP apiserver_longrunning_requests [STABLE] Gauge of all active long-running apiserver requests
apiserver_longrunning_requests{component="apiserver",group="",resource="secrets",scope="cluster",subresource="",verb="WATCH",version="v1"} 1
"""


def test_prometheus_samples_and_sums():
    got = stats.samples(APISERVER_METRICS, "apiserver_request_total")
    assert len(got) == 9  # not the _extra metric, not the comments
    assert stats.metric_sum(APISERVER_METRICS, "apiserver_request_total", resource="secrets", verb="APPLY") == 21
    assert stats.samples("up 1\n", "up") == [({}, 1.0)]
    ready = ('g{name="a",condition="True"} 1\ng{name="a",condition="False"} 0\n'
             'g{name="b",condition="True"} 0\ng{name="b",condition="False"} 1\n')
    assert stats.count_series(ready, "g", 1.0, condition="True") == 1
    for name in ("certmanager_controller_sync_call_count", "certmanager_controller_sync_call_count_total"):
        text = f'{name}{{controller="Certificate"}} 7.0\n{name}{{controller="Issuer"}} 2.0\n'
        assert stats.sync_calls(text) == 7.0


def test_request_counts_count_open_watches_and_skip_non_resources():
    counts = stats.request_counts(APISERVER_METRICS)
    assert counts[("WATCH", "secrets")] == 3  # 2 ended + 1 still open
    assert counts[("PATCH", "certificates/status")] == 21
    assert not any(resource == "" for _, resource in counts)


def test_api_cost_per_issuance_takes_out_the_clients_apply_and_leases():
    before = stats.request_counts(APISERVER_METRICS.replace("} 40", "} 0").replace("} 20", "} 0")
                                  .replace("} 21", "} 1"))
    after = stats.request_counts(APISERVER_METRICS)
    cost = stats.api_cost(stats.counter_delta(after, before), issued=20, applied_by_client=20)
    assert cost["writes_by_resource"] == {"certificates/status": 1.0, "events": 2.0, "secrets": 1.0}
    assert cost["writes_per_issuance_excl_events"] == 2.0
    assert cost["events_per_issuance"] == 2.0
    assert cost["reads_by_request"] == {"GET secrets": 1.0}
    assert "leases" not in json.dumps(cost)
    with pytest.raises(ValueError):
        stats.api_cost({}, issued=0)


def test_counter_delta_keeps_only_growth():
    assert stats.counter_delta({"a": 5, "b": 1}, {"a": 2, "b": 3, "c": 1}) == {"a": 3}


def test_proc_parsing():
    stat = "4242 (python -m (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 9 0 100 1000 10"
    assert stats.cpu_ticks(stat) == 175
    status = "Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n"
    assert stats.status_kib(status, "VmHWM") == 123456
    assert stats.status_kib(status, "VmRSS") == 100000
    with pytest.raises(KeyError):
        stats.status_kib(status, "VmSwap")
    assert stats.meminfo_total_gib("MemTotal:       24641536 kB\n") == pytest.approx(23.5, abs=0.01)


def test_manifests_are_valid_yaml_and_valid_certificates():
    docs = list(yaml.safe_load_all(manifests.to_yaml(
        manifests.ca_chain("ns", "RSA") + manifests.leaves("ns", range(3), "ECDSA", "ca", "1h", "59m"))))
    assert [d["kind"] for d in docs] == ["Issuer", "Certificate", "Issuer"] + ["Certificate"] * 3
    assert docs[1]["spec"]["isCA"] is True and docs[1]["spec"]["privateKey"] == {"algorithm": "RSA", "size": 2048}
    leaf = parse_certificate_spec(docs[4]["spec"])
    assert leaf.secret_name == "c1" and leaf.renew_before.total_seconds() == 59 * 60
    assert leaf.template.key.algorithm == "ECDSA" and leaf.template.key.size == 256
    secret = manifests.opaque_secret("ns", "foreign-1")
    assert len(__import__("base64").b64decode(secret["data"]["blob"])) == 1024
    assert "labels" not in secret["metadata"]  # not ours: outside certmint's label selector


def test_table_shows_values_targets_and_verdicts():
    results = {"scenarios": {
        "throughput": {"ecdsa": {"median": {"per_second": 123.4, "efficiency": 0.55,
                                            "writes_per_issuance_excl_events": 2.0}},
                       "rsa": {"median": {"cpu_cores": {"operator": 1.7}}}},
        "memory": {"median": {"large": {"hwm_mb": 151.0}, "restart": {"writes": 0}}},
    }}
    text = report.table(results)
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert "123.4" in lines["ECDSA: certificates/s (apply -> all Ready)"]
    assert lines["ECDSA: floor / ours [max(a,b) / time]"].endswith("MISSED")
    assert lines["RSA-2048: operator CPU (cores)"].endswith("ok")
    assert lines["memory: peak RSS, large N Ready (MB)"].endswith("MISSED")
    assert lines["restart: writes"].endswith("ok")
    assert "storm" not in text  # not run, not shown
    assert report.missed(results) == ["ECDSA: floor / ours [max(a,b) / time]", "memory: peak RSS, large N Ready (MB)"]
    assert report.table({"scenarios": {}}) == "(no results)"


def test_history_row_and_append():
    results = {"date": "2026-01-02 03:04", "commit": "abc1234", "mode": "full, 3 runs",
               "machine": {"cores": 2, "memory_gib": 23.5},
               "scenarios": {"throughput": {"ecdsa": {"median": {"per_second": 50.0, "efficiency": 0.5,
                                                                 "writes_per_issuance_excl_events": 2.0,
                                                                 "events_per_issuance": 2.0}}},
                             "soak": {"rss_slope_mb_per_hour": 0.4, "minutes": 10}}}
    row = report.history_row(results)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == report.HISTORY_HEADER.count("|") - 1
    assert cells[:5] == ["2026-01-02 03:04", "`abc1234`", "2 cores, 24 GiB", "full, 3 runs", "50 (0.50)"]
    assert cells[6] == "2.00 + 2.00"
    assert cells[-1] == "+0.40 (10 min)"
    assert cells[9] == "-"  # memory did not run

    created = report.append_history("# bench\n", row)
    assert created.count(report.HISTORY_HEADER) == 1 and created.rstrip().endswith(row)
    readme = created + "\n## After\n\ntext\n"
    twice = report.append_history(readme, row.replace("abc1234", "def5678"))
    lines = twice.splitlines()
    i = lines.index(row)
    assert "def5678" in lines[i + 1] and lines[i + 2] == ""  # appended at the end of the table, not the file
    assert twice.rstrip().endswith("text")


def test_merge_results_replaces_only_the_scenarios_that_ran():
    old = {"commit": "a", "scenarios": {"throughput": {"x": 1}, "soak": {"y": 2}}}
    new = {"commit": "b", "date": "d", "mode": "full", "scenarios": {"soak": {"y": 3}}}
    merged = report.merge_results(old, new)
    assert merged["scenarios"]["throughput"] == {"x": 1}
    assert merged["scenarios"]["soak"]["y"] == 3 and merged["scenarios"]["soak"]["measured"]["commit"] == "b"
    assert merged["commit"] == "b"


def test_profile_summary_of_collapsed_stacks():
    collapsed = ("_work (certmint/controller/core.py:120);run (certmint/controller/certificates.py:50) 30\n"
                 "_work (certmint/controller/core.py:120);request (certmint/kube/api.py:90);"
                 "loads (/usr/lib/python3.11/json/__init__.py:346) 70\n"
                 "garbage\n")
    s = profile.summarise(collapsed)
    assert s["samples"] == 100
    assert s["self"][0] == ("loads (json/__init__.py)", 0.7)
    assert dict(s["total"])["_work (certmint/controller/core.py)"] == 1.0
    assert profile.summarise("") == {"samples": 0, "self": [], "total": []}


def test_command_line():
    assert selected(parse_args([])) == ["throughput", "memory", "storm"]
    assert selected(parse_args(["--soak"]))[-1] == "soak"
    assert selected(parse_args(["--only", "soak"])) == ["soak"]
    assert selected(parse_args(["--only", "restart", "--only", "memory"])) == ["memory"]
    with pytest.raises(SystemExit):
        selected(parse_args(["--only", "nope"]))
    quick, full = Config.quick(), Config()
    assert quick.ecdsa_n < full.ecdsa_n and full.ecdsa_n == 1000 and full.rsa_n == 200
    assert full.runs >= 3 and full.memory_large_n == 10_000 and full.foreign_secrets == 20_000
    assert Config.quick(runs=5).runs == 5


def test_recovery_outcome_from_the_timestamps_of_a_run():
    from bench import recovery

    r = recovery.outcome(100, 25, fault_at=10.0, back_at=14.0, all_ready_at=16.5,
                         revisions={"c0": 1, "c1": 2, "c2": 1})
    assert r == {"n": 100, "ready_at_fault": 25, "outage_seconds": 4.0, "recovery_seconds": 2.5,
                 "fault_to_all_ready_seconds": 6.5, "issued_twice": 1}
    # all Ready before /readyz said so (the API server serves a moment earlier): no negative figure
    assert recovery.outcome(10, 3, 10.0, 14.0, 13.0, {})["recovery_seconds"] == 0.0
    with pytest.raises(ValueError):
        recovery.outcome(10, 3, 10.0, 9.0, 12.0, {})
    assert selected(parse_args(["--only", "recovery"])) == ["recovery"]
    assert "recovery" not in selected(parse_args([])), "it kills its control plane: only when asked"
    scenarios = {"recovery": {"apiserver": {"median": r}, "etcd": {"median": {**r, "recovery_seconds": 9.0}}}}
    lines = {line.split("  ")[0]: line.split() for line in report.table({"scenarios": scenarios}).splitlines()}
    apiserver = lines["recovery: API server killed mid-issuance, /readyz -> all Ready (s)"]
    etcd = lines["recovery: etcd frozen 15 s mid-issuance, thaw -> all Ready (s)"]
    assert apiserver[-4:] == ["2.5", "<=", "5", "ok"], apiserver
    assert etcd[-1] == "MISSED", etcd  # 9 s after the thaw misses the 5 s target


def test_scale_slopes_per_certificate_and_where_they_stop_being_linear():
    from bench import scale

    # 100 MB at 1,000, 145 at 10,000 (5 KB/cert), 345 at 50,000 (5 KB/cert): linear
    linear = scale.slopes({1000: 100.0, 10_000: 145.0, 50_000: 345.0}, factor=1000)
    assert [(s["from"], s["to"]) for s in linear] == [(1000, 10_000), (10_000, 50_000)]
    assert [s["per_certificate"] for s in linear] == [pytest.approx(5.0), pytest.approx(5.0)]
    assert not any(s["nonlinear"] for s in linear)
    # seconds: 1 ms/cert, then 2 ms/cert: twice the previous slope, more than 1.5x
    bent = scale.slopes({50_000: 90.0, 1000: 1.0, 10_000: 10.0}, factor=1000)  # any order of sizes
    assert bent[1]["per_certificate"] == pytest.approx(2.0) and bent[1]["ratio"] == pytest.approx(2.0)
    assert [s["nonlinear"] for s in bent] == [False, True]
    # exactly 1.5x is still linear; a flat or missing previous segment cannot be compared with
    assert not scale.slopes({0: 0.0, 10: 10.0, 20: 25.0})[1]["nonlinear"]
    assert not scale.slopes({0: 5.0, 10: 5.0, 20: 50.0})[1]["nonlinear"]
    gap = scale.slopes({0: 1.0, 10: None, 20: 5.0, 30: 50.0})
    assert gap[0]["per_certificate"] is None and gap[1]["per_certificate"] is None
    assert not gap[2]["nonlinear"]
    assert scale.slopes({1000: 1.0}) == []

    analysis = scale.analyse({1000: {"list_seconds": 1.0, "rss_peak_mb": 100.0},
                              10_000: {"list_seconds": 10.0, "rss_peak_mb": 145.0},
                              50_000: {"list_seconds": 90.0, "rss_peak_mb": 345.0}})
    assert analysis["slopes"]["list_seconds"][1]["unit"] == "ms/certificate"
    assert analysis["slopes"]["rss_peak_mb"][0]["unit"] == "KB/certificate"
    assert len(analysis["nonlinear"]) == 1
    assert analysis["nonlinear"][0].startswith("`certmint list -A` (s): not linear from 10,000 to 50,000")
    assert analysis["nonlinear"][0].endswith("2 ms/certificate, 2.0x the 1 ms/certificate from 1,000 to 10,000")


def _scale_result():
    from bench import scale

    median = {"1000": {"rss_steady_mb": 90.0, "rss_peak_mb": 100.0, "restart_seconds": 2.0, "list_seconds": 1.0,
                       "restart_writes": 0},
              "10000": {"rss_steady_mb": 135.0, "rss_peak_mb": 145.0, "restart_seconds": 11.0, "list_seconds": 10.0,
                        "restart_writes": 0}}
    return {"median": median, **scale.analyse({int(k): v for k, v in median.items()})}


def test_scale_table_in_markdown():
    from bench import scale

    text = scale.render_table(_scale_result(), {"date": "2026-01-02 03:04", "commit": "abc1234",
                                                "machine": {"cores": 2}, "mode": "full, only scale, 1 runs"})
    lines = text.splitlines()
    assert lines[0].startswith("Measured 2026-01-02 03:04 UTC at `abc1234` on 2 cores")
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| figure | 1,000 | 10,000 | per cert. 1,000 -> 10,000 |"
    assert table[1] == "|---|---|---|---|"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["steady RSS (MB)"] == "| steady RSS (MB) | 90.0 | 135 | 5 KB |"
    assert rows["restart, start -> steady (s)"].endswith("| 2 | 11.0 | 1 ms |")
    assert rows["one resync, operator CPU (s)"] == "| one resync, operator CPU (s) | - | - | - |"  # not measured
    assert rows["API writes during the restart (target 0)"].startswith("| API writes during the restart (target 0) | 0 | 0 |")
    assert all(line.count("|") == table[0].count("|") for line in table)
    summary = scale.summary(_scale_result())
    assert "every figure grows linearly" in summary

    bent = _scale_result()
    bent["median"]["50000"] = {**bent["median"]["10000"], "list_seconds": 90.0}
    bent.update(scale.analyse({int(k): v for k, v in bent["median"].items()}))
    row = [line for line in scale.render_table(bent).splitlines() if line.startswith("| `certmint list -A`")][0]
    assert row == "| `certmint list -A` (s) | 1 | 10.0 | 90.0 | 1 ms | 2 ms (**2.0x: not linear**) |"
    assert "not linear from 10,000 to 50,000" in scale.summary(bent)


def test_scale_readme_section_is_added_once_then_rewritten_between_its_markers():
    from bench import scale

    readme = "# bench\n\n## Findings\n\ntext\n\n## History\n\n" + report.README_MARKER + "\n\n| a |\n"
    first = scale.rewrite_section(readme, scale.section_block("| t1 |"))
    assert first.index("### Scale") < first.index(scale.TABLE_START) < first.index("| t1 |") \
        < first.index(scale.TABLE_END) < first.index("## History")
    assert "[scale.png](scale.png)" in first
    assert first.startswith("# bench\n\n## Findings\n\ntext\n\n### Scale\n")
    second = scale.rewrite_section(first, scale.section_block("| t2 |"))
    assert "| t1 |" not in second and "| t2 |" in second
    assert second.count("### Scale") == 1 and second.count(scale.TABLE_START) == 1
    assert second.replace("| t2 |", "| t1 |") == first  # nothing else moved
    assert scale.rewrite_section("# bench\n", "| t |").endswith(f"{scale.TABLE_START}\n\n| t |\n\n{scale.TABLE_END}\n")
    # the committed README has the section, before the history
    committed = (Path(__file__).resolve().parents[2] / "bench" / "README.md").read_text()
    assert committed.index("### Scale") < committed.index(scale.TABLE_START) < committed.index(scale.TABLE_END) \
        < committed.index("## History")


def test_scale_command_line_and_config():
    from bench import scale

    assert "scale" not in selected(parse_args([])), "it grows a control plane to 50,000 certificates: only when asked"
    assert selected(parse_args(["--only", "scale"])) == ["scale"]
    assert Config().scale_sizes == scale.DEFAULT_SIZES == (1000, 10_000, 50_000)
    assert parse_args(["--scale-sizes", "1000,10000,50000"]).scale_sizes == scale.DEFAULT_SIZES
    assert parse_args(["--scale-sizes", "300, 100"]).scale_sizes == (100, 300)
    assert parse_args([]).scale_sizes is None
    for bad in ("", "0,100", "ten", "-5"):
        with pytest.raises(ValueError):
            scale.parse_sizes(bad)
    with pytest.raises(SystemExit):
        parse_args(["--scale-sizes", "x"])
    assert Config.quick().scale_sizes != scale.DEFAULT_SIZES
