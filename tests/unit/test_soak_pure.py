"""The soak's pure parts: the fault plan, the ledger's lines, and the verdict that compares
ledger with status (a verdict that cannot fail would make the soak worthless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor.engine.status import encode_runs
from soak import ledger, schedule
from soak.faults import Executor
from soak.ledger import Execution
from soak.verdict import RunView, judge
from support.waiting import eventually


def test_a_plan_reads_targets_times_and_outages_in_start_order():
    faults = schedule.parse("rabbitmq@8+6, worker@3,operator@4.5+2")
    assert [str(f) for f in faults] == ["worker@3", "operator@4.5+2", "rabbitmq@8+6"]
    assert faults[1].until == 6.5
    assert schedule.overlapping(faults) == []
    assert schedule.overlapping(schedule.parse("etcd@1+5,kube-apiserver@3+1")) != []


@pytest.mark.parametrize(("plan", "complaint"), [
    ("kubelet@1+1", "TARGET one of"),
    ("etcd@1", "how long etcd stays down"),
    ("worker@1+3", "restarted by the node agent"),
    ("etcd@x+1", "seconds"),
    ("etcd@1+5,etcd@3+1", "killed once at a time"),
])
def test_a_plan_that_cannot_be_carried_out_says_why(plan: str, complaint: str):
    with pytest.raises(schedule.PlanError, match=complaint):
        schedule.parse(plan)


def test_the_default_and_ci_plans_are_valid_and_overlap():
    for plan in (schedule.DEFAULT_PLAN, schedule.CI_PLAN):
        faults = schedule.parse(plan)
        assert schedule.overlapping(faults)
    assert {f.target for f in schedule.parse(schedule.DEFAULT_PLAN)} == set(schedule.TARGETS)


def test_ledger_lines_written_are_read_back_per_execution(tmp_path: Path):
    first, second = ledger.Writer(tmp_path, sync=True), ledger.Writer(tmp_path, sync=False)
    first.record("uid/fan[0]/1", "uid", 0)
    second.record("uid/fan[1]/1", "uid", 1)
    first.record("uid/fan[0]/1", "uid", 0)
    read = sorted(ledger.read(tmp_path), key=lambda e: e.index)
    assert [(e.attempt, e.index) for e in read] == [
        ("uid/fan[0]/1", 0), ("uid/fan[0]/1", 0), ("uid/fan[1]/1", 1)]


def _status(phase: str, outputs: list[Any], succeeded: int, states: str | None = None,
            attempts: int = 0) -> dict[str, Any]:
    codes = states if states is not None else encode_runs(
        ["S" if o is not None else "Q" for o in outputs])
    return {"phase": phase, "tasks": [{
        "name": "fan", "phase": phase, "attempts": attempts or len(outputs),
        "outputs": outputs,
        "items": {"total": len(outputs), "succeeded": succeeded, "states": codes}}]}


def _ran(uid: str, *indexes: int, attempt: int = 1) -> list[Execution]:
    return [Execution(f"{uid}/fan[{i}]/{attempt}", uid, i, "w") for i in indexes]


def test_a_clean_run_has_nothing_lost_stuck_or_double_applied():
    view = RunView("r0", "u0", 3, _status("Succeeded", [{"i": 0}, {"i": 1}, {"i": 2}], 3))
    verdict = judge([view], _ran("u0", 0, 1, 2))
    assert (verdict.lost, verdict.stuck, verdict.double_applied, verdict.re_executed) == (
        0, 0, 0, 0)
    assert verdict.ok


def test_an_item_never_executed_is_lost_even_if_the_status_says_it_succeeded():
    view = RunView("r0", "u0", 3, _status("Succeeded", [{"i": 0}, {"i": 1}, {"i": 2}], 3))
    verdict = judge([view], _ran("u0", 0, 2))
    assert verdict.lost == 1
    assert not verdict.ok


def test_a_run_not_terminal_is_stuck():
    view = RunView("r0", "u0", 2, _status("Running", [{"i": 0}, None], 1))
    verdict = judge([view], _ran("u0", 0))
    assert (verdict.stuck, verdict.lost) == (1, 1)


def test_re_executions_are_counted_and_allowed():
    view = RunView("r0", "u0", 2, _status("Succeeded", [{"i": 0}, {"i": 1}], 2))
    runs = _ran("u0", 0, 1) + _ran("u0", 0) + _ran("u0", 1, attempt=2)
    verdict = judge([view], runs)
    assert (verdict.re_executed, verdict.redelivered) == (2, 1)
    assert verdict.ok


@pytest.mark.parametrize("status", [
    _status("Succeeded", [{"i": 0}, {"i": 0}], 2),                     # an index twice
    _status("Succeeded", [{"i": 0}, {"i": 1}], 3, states="S2"),        # counted past states
    _status("Running", [{"i": 0}, None], 2, states="SQ"),              # counted past outputs
])
def test_a_result_applied_twice_shows_as_double_applied(status: dict[str, Any]):
    verdict = judge([RunView("r0", "u0", 2, status)], _ran("u0", 0, 1))
    assert verdict.double_applied >= 1
    assert not verdict.ok


def test_a_failed_run_fails_the_soak_and_stray_executions_are_noted():
    view = RunView("r0", "u0", 1, _status("Failed", [None], 0, states="F"))
    verdict = judge([view], _ran("u0", 0) + _ran("other", 0) + _ran("u0", 7))
    assert verdict.not_succeeded == 1 and verdict.strays == 2
    assert not verdict.ok


class _Flaky:
    """A part that dies on its first start again (as RabbitMQ once did on a loaded CI
    machine), then serves: the watcher must keep polling and say what happened."""

    def __init__(self) -> None:
        self.died: list[str] = []
        self.polls = 0

    def kill(self) -> str:
        return "flaky pids=1"

    def restart(self) -> None:
        pass

    def serving(self) -> bool:
        self.polls += 1
        if self.polls == 1:
            self.died.append("could not bind the port")
            raise RuntimeError("exited while starting")
        return self.polls >= 3


def test_a_part_that_dies_while_starting_again_is_watched_until_it_serves():
    target = _Flaky()
    executor = Executor(schedule.parse("rabbitmq@0+0.1"), {"rabbitmq": target})
    executor.begin()
    eventually(executor.done, 20, interval=0.05, what="the fault to be carried out and watched")
    [happened] = executor.happened
    assert happened.error is None
    assert happened.serving_at is not None and target.polls == 3
    assert "died 1x while starting: could not bind the port" in happened.what
