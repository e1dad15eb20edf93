"""The peer benchmark's pure parts (bench/peers/report.py) and the API server's counter as the
benches read it (bench/benchlib.py): medians, ratios and aims, the table, writes by resource,
a process's CPU. The benches are scripts, not a package: loaded here by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


report = _load("bench_peers_report", BENCH / "peers" / "report.py")
benchlib = _load("benchlib", BENCH / "benchlib.py")

def _sample(code: str, group: str, resource: str, subresource: str, verb: str,
            value: int) -> str:
    return (f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",'
            f'group="{group}",resource="{resource}",scope="resource",'
            f'subresource="{subresource}",verb="{verb}",version="v1"}} {value}')


METRICS = "\n".join([
    "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
    "# TYPE apiserver_request_total counter",
    _sample("201", "conveyor.dev", "workflowruns", "", "POST", 300),
    _sample("409", "conveyor.dev", "workflowruns", "", "POST", 2),
    _sample("200", "conveyor.dev", "workflowruns", "status", "PUT", 610),
    _sample("200", "conveyor.dev", "workflowruns", "status", "PATCH", 5),
    _sample("200", "conveyor.dev", "workflowruns", "", "LIST", 40),
    _sample("200", "conveyor.dev", "workflowruns", "", "PATCH", 3),
    _sample("201", "", "events", "", "POST", 1200),
    _sample("201", "events.k8s.io", "events", "", "POST", 4),
    'apiserver_request_duration_seconds_count{resource="events",verb="POST"} 99',
]) + "\n"


def test_the_counter_is_summed_by_verb_resource_and_subresource():
    requests = benchlib.parse_requests(METRICS)
    assert requests[("POST", "workflowruns", "")] == 302  # over codes
    assert requests[("PUT", "workflowruns", "status")] == 610
    assert requests[("POST", "events", "")] == 1204  # over groups
    assert ("POST", "events", "") in requests and len(requests) == 6  # other metrics ignored
    assert benchlib.writes_of(requests, "workflowruns") == 302 + 610 + 5 + 3  # no LIST


def test_a_workloads_writes_are_split_by_what_they_were():
    before = benchlib.parse_requests(METRICS)
    after = dict(before)
    after[("POST", "workflowruns", "")] += 300
    after[("PUT", "workflowruns", "status")] += 450
    after[("DELETE", "workflowruns", "")] = 7  # new since `before`: the bench's own
    after[("PATCH", "workflowruns", "")] = before.get(("PATCH", "workflowruns", ""), 0) + 2
    after[("LIST", "workflowruns", "")] = 99
    after[("POST", "events", "")] += 30
    gained = report.delta(after, before)
    assert gained[("DELETE", "workflowruns", "")] == 7
    assert report.run_writes(gained) == {
        "WorkflowRun create": 300, "WorkflowRun status": 450, "WorkflowRun other": 2,
        "Events": 30}
    assert report.run_writes({}) == dict.fromkeys(report.run_writes(gained), 0.0)


def test_cpu_seconds_are_utime_and_stime_even_with_parentheses_in_the_name():
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    stat = "4242 (python (x) y) " + " ".join(fields)
    assert report.cpu_seconds(stat, 100.0) == 3.0


def test_percentiles_interpolate_between_ranks():
    assert report.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert report.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert report.percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert report.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        report.percentile([], 50)


def test_ratios_are_per_round_and_said_the_right_way_round():
    fan = report.Row("fan-out", "tasks/s", True, report.Aim(">= 1.8x", min_ratio=1.8),
                     conveyor=[2000, 1800, 2400], celery=[1000, 1000, 1000])
    assert fan.ratios() == [2.0, 1.8, 2.4]
    assert fan.median_ratio() == 2.0 and fan.met() is True
    assert report.ratio_cell(fan) == "2.00 [1.80-2.40]: Conveyor 2.00x faster"
    chain = report.Row("chain", "ms/step", False, report.Aim("<= 1.5x", max_ratio=1.5),
                       conveyor=[30, 40, 20], celery=[10, 10, 10])
    assert chain.median_ratio() == 3.0 and chain.met() is False
    assert report.reading(3.0, False) == "Conveyor 3.00x slower"
    assert report.reading(0.5, False) == "Conveyor 2.00x faster"
    assert report.reading(0.5, True) == "Conveyor 2.00x slower"


def test_an_aim_needs_every_bound_it_names():
    both = report.Aim(">= 1.0x and >= 150", min_ratio=1.0, min_value=150)
    assert both.met(200, 1.2)
    assert not both.met(120, 1.2)
    assert not both.met(200, 0.9)
    assert not both.met(200, None)  # a ratio asked for but no Celery figure
    assert report.Aim("<= 1", max_value=1).met(1.0, None)
    assert report.Row("x", "u", True).met() is None  # no aim
    assert report.Row("x", "u", True, both).met() is None  # no figures


def test_the_table_shows_medians_ratios_aims_and_verdicts():
    rows = [
        report.Row("fan-out: 5,000 no-op tasks", "tasks/s", True,
                   report.Aim(">= 1.8x Celery", min_ratio=1.8),
                   conveyor=[1271.4, 1300, 1100], celery=[348, 400, 300], first=[
                       "Conveyor", "Celery", "Conveyor"]),
        report.Row("1,000 events", "runs/s", True, report.Aim(">= 150 runs/s", min_value=150),
                   conveyor=[70, 80, 75], celery=[35, 36, 40],
                   celery_note="1,000 chains at once"),
        report.Row("Events per small run", "Events/run", False,
                   report.Aim("<= 1", max_value=1), conveyor=[4.5, 4.4, 4.6]),
    ]
    lines = report.table(rows).splitlines()
    assert lines[0].startswith("| workload | Conveyor | Celery |")
    assert lines[2] == ("| fan-out: 5,000 no-op tasks (tasks/s) | 1,271 | 348 | "
                        "3.65 [3.25-3.67]: Conveyor 3.65x faster | >= 1.8x Celery | pass |")
    assert "| 75.0 | 36.0 (1,000 chains at once) |" in lines[3] and lines[3].endswith("| miss |")
    assert lines[4] == "| Events per small run (Events/run) | 4.50 | - | - | <= 1 | miss |"
    per_round = report.rounds(rows).splitlines()
    assert per_round[1] == ("  fan-out: 5,000 no-op tasks, round 2: Conveyor 1,300 tasks/s, "
                            "Celery 400 tasks/s, ratio 3.25 (Conveyor 3.25x faster), "
                            "Celery first")
    assert per_round[-1] == "  Events per small run, round 3: Conveyor 4.60 Events/run"


def test_numbers_keep_about_three_digits():
    assert [report.number(x) for x in (12345.6, 123.4, 12.34, 1.234, 0.01234)] == [
        "12,346", "123", "12.3", "1.23", "0.0123"]
