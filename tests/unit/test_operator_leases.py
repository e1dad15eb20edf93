"""Leases on in-flight attempts (operator/runs/leases.py): an attempt whose message is gone is
found and dispatched again under its own id, and one that is only waiting or busy is not.

The policy on a given clock; the engine's TaskLost; and the LeaseKeeper driving the real
RunManager over the fakes, where the "broker" simply never delivers the first message.
"""

from __future__ import annotations

from conveyor import engine
from conveyor.operator.runs.leasekeeping import LeaseKeeper
from conveyor.operator.runs.leases import Leases
from unit.builders import compiled, task
from unit.driving import Driver
from unit.fakes import Bed, drive, task_of, workflow_spec

LEASE = 10.0


def never_emptied(_task_type: str) -> float | None:
    return None


def test_a_running_attempt_is_lost_only_after_a_whole_lease_without_a_sign() -> None:
    leases = Leases(LEASE)
    leases.hold("r", 0.0)
    running = [("r/a/1", "work", True)]
    leases.renew("r/a/1", 0.0)
    assert leases.lost("r", running, 9.0, never_emptied) == []
    leases.renew("r/a/1", 8.0)  # a heartbeat
    assert leases.lost("r", running, 17.0, never_emptied) == []
    assert leases.lost("r", running, 18.5, never_emptied) == ["r/a/1"]


def test_a_queued_attempt_is_lost_only_once_its_queue_was_seen_empty_after_its_sign() -> None:
    leases = Leases(LEASE)
    leases.hold("r", 0.0)
    queued = [("r/a/1", "work", False)]
    leases.renew("r/a/1", 5.0)
    # Waiting behind others in a queue never seen empty: not lost, however long.
    assert leases.lost("r", queued, 500.0, never_emptied) == []
    # Empty before the dispatch says nothing about this message.
    assert leases.lost("r", queued, 500.0, lambda _t: 4.0) == []
    # Empty after it, yet no `started`: the message is gone.
    assert leases.lost("r", queued, 500.0, lambda _t: 6.0) == ["r/a/1"]
    assert leases.lost("r", queued, 14.0, lambda _t: 6.0) == []  # the lease has not run out


def test_no_lease_runs_out_within_a_lease_of_taking_the_run_or_of_being_deaf() -> None:
    leases = Leases(LEASE)
    attempt = [("r/a/1", "work", True)]
    leases.hold("r", 100.0)  # rebuilt after a restart: no sign known from before
    assert leases.lost("r", attempt, 105.0, never_emptied) == []
    assert leases.lost("r", attempt, 111.0, never_emptied) == ["r/a/1"]
    leases.deaf(200.0)  # e.g. the link was down: signs may have gone unheard
    assert leases.lost("r", attempt, 209.0, never_emptied) == []
    assert leases.lost("r", attempt, 211.0, never_emptied) == ["r/a/1"]


def test_forgotten_attempts_and_runs_start_afresh() -> None:
    leases = Leases(LEASE)
    leases.hold("r", 0.0)
    leases.renew("r/a/1", 50.0)
    leases.keep_only(set(), set())
    leases.hold("r", 60.0)
    # The sign at 50 was forgotten; the run counts from when it was taken again (60).
    assert leases.lost("r", [("r/a/1", "work", True)], 65.0, never_emptied) == []


def test_task_lost_publishes_the_same_attempt_again_and_its_result_applies_once() -> None:
    d = Driver(compiled(task("a", inputs={"x": "${{ inputs.x }}"}), task("b", "a")),
               {"x": 7})
    d.start()
    d.started("run-1/a/1")
    assert d.task("a")["phase"] == "Running"
    actions = d.apply(engine.TaskLost("run-1/a/1"))
    again = [a for a in actions if isinstance(a, engine.Publish)]
    assert [(p.attempt_id, p.attempt, p.inputs) for p in again] == [("run-1/a/1", 1, {"x": 7})]
    assert any(isinstance(a, engine.Persist) for a in actions)
    assert d.task("a")["phase"] == "Queued"
    assert d.task("a")["attempts"] == 1  # the same attempt, not a new one
    d.succeed("run-1/a/1", {"n": 1})
    assert d.succeed("run-1/a/1", {"n": 2}) == []  # the other copy's result is ignored
    assert d.task("a")["outputs"] == {"n": 1}
    assert d.ids() == ["run-1/a/1", "run-1/a/1", "run-1/b/1"]


def test_task_lost_of_an_attempt_not_in_flight_changes_nothing() -> None:
    d = Driver(compiled(task("a", retry={"limit": 2, "backoffSeconds": 5})))
    d.start()
    d.fail("run-1/a/1")  # Retrying: attempt 1 is over
    assert d.apply(engine.TaskLost("run-1/a/1")) == []
    d.advance(6)
    d.succeed("run-1/a/2")
    assert d.apply(engine.TaskLost("run-1/a/2")) == []


def test_in_flight_lists_queued_and_running_instances_with_their_attempt_ids() -> None:
    d = Driver(compiled(task("fan", forEach="${{ [1, 2, 3] }}")))
    d.start()
    d.started("run-1/fan[1]/1")
    d.succeed("run-1/fan[2]/1")
    assert sorted(engine.in_flight(d.run)) == [("run-1/fan[0]/1", "pool", False),
                                               ("run-1/fan[1]/1", "pool", True)]


class Clock:
    """The leases' clock, moved by the test: time passes without the test waiting for it."""

    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


def _bed(clock: Clock) -> Bed:
    bed = Bed(lease_seconds=LEASE)
    bed.manager.leases.now = clock
    return bed


def _keeper(bed: Bed, emptied: dict[str, float], unread: list[int | None]) -> LeaseKeeper:
    async def unread_events() -> int | None:
        return unread[0]

    manager = bed.manager
    return LeaseKeeper(manager.runs, manager.actor, manager.leases, bed.link, bed.metrics,
                       emptied_at=lambda key: emptied.get(key[2]),
                       unread_events=unread_events, unread_limit=0, interval=3600)


def test_a_message_lost_from_its_queue_is_dispatched_again_and_the_run_succeeds() -> None:
    async def scenario() -> None:
        clock = Clock()
        bed = _bed(clock)
        bed.add_workflow(workflow_spec({"name": "a"}))
        bed.add_run("r1", uid="u1")
        bed.start()
        await bed.until(lambda: len(bed.link.with_id("u1/a/1")) == 1, what="the dispatch")
        await bed.settle()
        emptied: dict[str, float] = {}
        unread: list[int | None] = [0]
        keeper = _keeper(bed, emptied, unread)
        assert await keeper.check() == 0  # taken just now: its lease is fresh

        clock.advance(LEASE + 1)
        assert await keeper.check() == 0  # the queue was never seen empty: maybe waiting
        emptied["pool"] = clock()  # now it was, and no worker said `started`
        clock.advance(LEASE + 1)
        bed.link.is_connected = False  # cannot hear: no lease runs out
        assert await keeper.check() == 0
        bed.link.is_connected = True
        clock.advance(LEASE + 1)
        unread[0] = 3  # events not read yet: the sign may be among them
        assert await keeper.check() == 0
        unread[0] = 0
        clock.advance(LEASE + 1)
        emptied["pool"] = clock()
        assert await keeper.check() == 1
        await bed.until(lambda: len(bed.link.with_id("u1/a/1")) == 2,
                        what="the same attempt published again")
        assert bed.metrics.redispatched._value.get() == 1
        assert await keeper.check() == 0  # just dispatched again: a fresh lease

        bed.send("u1/a/1", outputs={"ok": True})
        await bed.until(lambda: (bed.status("r1") or {}).get("phase") == "Succeeded",
                        what="the run to succeed")
        assert task_of(bed.last("r1"), "a")["attempts"] == 1

    drive(scenario)


def test_a_busy_running_attempt_keeps_its_lease_with_heartbeats() -> None:
    async def scenario() -> None:
        clock = Clock()
        bed = _bed(clock)
        bed.add_workflow(workflow_spec({"name": "a"}))
        bed.add_run("r1", uid="u1")
        bed.start()
        await bed.until(lambda: len(bed.link.with_id("u1/a/1")) == 1, what="the dispatch")
        keeper = _keeper(bed, {"pool": clock() + 3600}, [0])
        bed.send("u1/a/1", "started")
        for _ in range(4):  # four times the lease, one heartbeat short of each lease
            clock.advance(LEASE * 0.9)
            bed.send("u1/a/1", "heartbeat")
            await bed.settle()
            assert await keeper.check() == 0
        assert len(bed.link.with_id("u1/a/1")) == 1

    drive(scenario)
