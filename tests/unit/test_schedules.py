"""The schedules' pure core: due times in a zone (DST), catch-up within the deadline,
suspend, Forbid and Replace, history, the cursor recorded in status, the run's name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conveyor import names
from conveyor.manifests import scheduled_run, scheduled_run_name
from conveyor.models import Schedule
from conveyor.schedules import (
    MAX_CATCH_UP,
    ScheduledRun,
    cursor,
    decide,
    due_after,
    problems,
    time_text,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def schedule(cron: str = "* * * * *", **fields: Any) -> Schedule:
    return Schedule.model_validate({"name": "s", "cron": cron, **fields})


def run(name: str, due: datetime, phase: str | None) -> ScheduledRun:
    return ScheduledRun(name, due, phase)


# -- the calendar ----------------------------------------------------------------------------
def test_due_times_are_read_in_the_zone_with_its_half_hour_offset() -> None:
    kolkata = schedule("0 9 * * *", timeZone="Asia/Kolkata")  # UTC+05:30
    assert next(due_after(kolkata, utc(2026, 12, 2, 0, 0))) == utc(2026, 12, 2, 3, 30)


def test_a_time_the_clock_skips_falls_due_when_it_jumps_past_it() -> None:
    # Europe/Berlin jumps from 02:00 to 03:00 on 2026-03-29: 02:30 does not exist that day.
    berlin = schedule("30 2 * * *", timeZone="Europe/Berlin")
    times = due_after(berlin, utc(2026, 3, 28, 12, 0))
    assert [next(times) for _ in range(2)] == [utc(2026, 3, 29, 1, 0),  # 03:00 CEST
                                               utc(2026, 3, 30, 0, 30)]  # 02:30 CEST


def test_a_fixed_hour_that_happens_twice_starts_once_a_stepped_one_twice() -> None:
    # 2026-10-25 Europe/Berlin: 02:00-03:00 happens twice (CEST, then CET).
    fixed = due_after(schedule("30 2 * * *", timeZone="Europe/Berlin"), utc(2026, 10, 24, 12))
    assert [next(fixed) for _ in range(2)] == [utc(2026, 10, 25, 0, 30),
                                               utc(2026, 10, 26, 1, 30)]
    stepped = due_after(schedule("30 * * * *", timeZone="Europe/Berlin"),
                        utc(2026, 10, 24, 23, 40))
    assert [next(stepped) for _ in range(3)] == [utc(2026, 10, 25, 0, 30),  # 02:30 CEST
                                                 utc(2026, 10, 25, 1, 30),  # 02:30 CET
                                                 utc(2026, 10, 25, 2, 30)]  # 03:30 CET


def test_the_dst_change_starts_each_distinct_instant_once_in_decide() -> None:
    berlin = schedule("30 * * * *", timeZone="Europe/Berlin", startingDeadlineSeconds=7200)
    decision = decide(berlin, utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 1, 45))
    assert decision.start == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))
    names_ = {scheduled_run_name("wf", "s", t) for t in decision.start}
    assert len(names_) == 2


@pytest.mark.parametrize(("fields", "where", "says"), [
    ({"cron": "61 * * * *"}, "spec.schedules[0].cron", "Bad minute"),
    ({"cron": "* * * * * *"}, "spec.schedules[0].cron", "five fields"),
    ({"cron": "* * 31 2 FOO"}, "spec.schedules[0].cron", "day"),
    ({"timeZone": "Mars/Olympus_Mons"}, "spec.schedules[0].timeZone", "not a known IANA"),
])
def test_problems_name_the_field(fields: dict[str, Any], where: str, says: str) -> None:
    found = problems(schedule(**fields), "spec.schedules[0]")
    assert [p.path for p in found] == [where]
    assert says.lower() in found[0].message.lower()


def test_a_good_schedule_has_no_problems() -> None:
    assert problems(schedule("*/5 9-17 * * MON-FRI", timeZone="Asia/Kolkata"), "x") == []


# -- what is owed ----------------------------------------------------------------------------
def test_a_new_schedule_owes_nothing_and_says_when_it_is_next_due() -> None:
    decision = decide(schedule(), None, utc(2026, 12, 2, 12, 0, 30))
    assert decision.start == ()
    assert decision.skipped == ()
    assert decision.next_time == utc(2026, 12, 2, 12, 1)
    assert decision.cursor == utc(2026, 12, 2, 12, 0, 30)


def test_a_due_time_starts_once_then_is_behind_the_cursor() -> None:
    every = schedule()
    first = decide(every, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 1, 2))
    assert first.start == (utc(2026, 12, 2, 12, 1),)
    assert first.next_time == utc(2026, 12, 2, 12, 2)
    again = decide(every, first.cursor, utc(2026, 12, 2, 12, 1, 30))
    assert again.start == ()


def test_a_due_time_exactly_now_is_owed() -> None:
    decision = decide(schedule(), utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 1))
    assert decision.start == (utc(2026, 12, 2, 12, 1),)


def test_missed_times_within_the_deadline_are_caught_up_older_ones_skipped() -> None:
    every = schedule(startingDeadlineSeconds=150)
    decision = decide(every, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 10, 20))
    # 12:07:50 is the oldest allowed: 12:08, 12:09, 12:10 start; 12:01..12:07 are too late.
    assert decision.start == (utc(2026, 12, 2, 12, 8), utc(2026, 12, 2, 12, 9),
                              utc(2026, 12, 2, 12, 10))
    (skip,) = decision.skipped
    assert skip.reason == "DeadlineExceeded"
    assert skip.schedule_time == utc(2026, 12, 2, 12, 7)
    assert "2026-12-02T12:01:00Z to 2026-12-02T12:07:00Z" in skip.message
    assert decision.cursor == utc(2026, 12, 2, 12, 10)


def test_a_time_exactly_at_the_deadline_still_starts() -> None:
    decision = decide(schedule(startingDeadlineSeconds=60), utc(2026, 12, 2, 11, 59),
                      utc(2026, 12, 2, 12, 1))
    assert decision.start == (utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 1))


def test_all_missed_past_the_deadline_start_nothing_and_are_reported() -> None:
    hourly = schedule("0 * * * *", startingDeadlineSeconds=300)
    decision = decide(hourly, utc(2026, 12, 2, 9, 30), utc(2026, 12, 2, 12, 10))
    assert decision.start == ()
    (skip,) = decision.skipped
    assert (skip.reason, skip.schedule_time) == ("DeadlineExceeded", utc(2026, 12, 2, 12, 0))
    assert decision.cursor == utc(2026, 12, 2, 12, 0)
    assert decision.next_time == utc(2026, 12, 2, 13, 0)


def test_without_a_deadline_only_the_latest_missed_time_starts() -> None:
    decision = decide(schedule(), utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 5, 10))
    assert decision.start == (utc(2026, 12, 2, 12, 5),)
    (skip,) = decision.skipped
    assert skip.schedule_time == utc(2026, 12, 2, 12, 4)
    assert "no startingDeadlineSeconds" in skip.message


def test_catch_up_is_capped_and_a_long_outage_costs_only_the_window() -> None:
    every = schedule(startingDeadlineSeconds=10 * 24 * 3600)
    decision = decide(every, utc(2026, 11, 1), utc(2026, 12, 2, 12, 0))
    assert len(decision.start) == MAX_CATCH_UP
    assert decision.start[-1] == utc(2026, 12, 2, 12, 0)
    assert decision.skipped[0].schedule_time == decision.start[0] - timedelta(minutes=1)


def test_a_cursor_in_the_future_is_taken_as_now() -> None:
    # The cron was edited from yearly to every minute: the recorded next time is far away.
    decision = decide(schedule(), utc(2027, 1, 1), utc(2026, 12, 2, 12, 0, 30))
    assert decision.next_time == utc(2026, 12, 2, 12, 1)
    assert decision.start == ()


# -- suspend and the concurrency policies ---------------------------------------------------
def test_suspended_due_times_are_skipped_and_not_owed_on_resume() -> None:
    suspended = schedule(suspend=True, startingDeadlineSeconds=3600)
    decision = decide(suspended, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 3, 5))
    assert decision.start == ()
    (skip,) = decision.skipped
    assert (skip.reason, skip.schedule_time) == ("Suspended", utc(2026, 12, 2, 12, 3))
    assert skip.message.startswith("3 due times")
    resumed = decide(schedule(startingDeadlineSeconds=3600), decision.cursor,
                     utc(2026, 12, 2, 12, 3, 40))
    assert resumed.start == ()


def test_forbid_skips_while_a_run_is_unfinished() -> None:
    forbid = schedule(concurrencyPolicy="Forbid")
    running = [run("wf-s-202612021200", utc(2026, 12, 2, 12, 0), "Running")]
    decision = decide(forbid, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 1, 1), running)
    assert decision.start == ()
    (skip,) = decision.skipped
    assert skip.reason == "Forbidden"
    assert "wf-s-202612021200" in skip.message
    assert decision.cursor == utc(2026, 12, 2, 12, 1)


def test_forbid_counts_a_run_without_a_phase_yet_as_unfinished() -> None:
    forbid = schedule(concurrencyPolicy="Forbid")
    fresh = [run("wf-s-202612021200", utc(2026, 12, 2, 12, 0), None)]
    assert decide(forbid, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 1), fresh).start == ()


def test_forbid_starts_once_the_run_finished_and_only_the_latest_owed() -> None:
    forbid = schedule(concurrencyPolicy="Forbid", startingDeadlineSeconds=600)
    done = [run("wf-s-202612021200", utc(2026, 12, 2, 12, 0), "Succeeded")]
    decision = decide(forbid, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 3), done)
    assert decision.start == (utc(2026, 12, 2, 12, 3),)
    assert [s.reason for s in decision.skipped] == ["Superseded"]


def test_allow_starts_beside_an_unfinished_run() -> None:
    running = [run("wf-s-202612021200", utc(2026, 12, 2, 12, 0), "Running")]
    decision = decide(schedule(), utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 1), running)
    assert decision.start == (utc(2026, 12, 2, 12, 1),)
    assert decision.delete == ()


def test_replace_deletes_the_unfinished_runs_and_starts_the_new_one() -> None:
    replace = schedule(concurrencyPolicy="Replace")
    runs = [run("wf-s-202612021200", utc(2026, 12, 2, 12, 0), "Running"),
            run("wf-s-202612021159", utc(2026, 12, 2, 11, 59), "Succeeded")]
    decision = decide(replace, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 1), runs)
    assert decision.start == (utc(2026, 12, 2, 12, 1),)
    assert decision.replaced == ("wf-s-202612021200",)
    assert [r.name for r in decision.delete] == ["wf-s-202612021200"]


def test_replace_with_nothing_due_deletes_nothing() -> None:
    replace = schedule(concurrencyPolicy="Replace")
    runs = [run("wf-s-202612021200", utc(2026, 12, 2, 12, 0), "Running")]
    decision = decide(replace, utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 12, 0, 30), runs)
    assert decision.delete == ()


# -- history ---------------------------------------------------------------------------------
def test_history_keeps_the_latest_finished_runs_of_each_kind() -> None:
    limits = schedule(successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1)
    runs = [run(f"r{m}", utc(2026, 12, 2, 12, m), phase) for m, phase in
            [(0, "Succeeded"), (1, "Failed"), (2, "Succeeded"), (3, "Cancelled"),
             (4, "Succeeded"), (5, "Running"), (6, "Failed")]]
    decision = decide(limits, utc(2026, 12, 2, 12, 6), utc(2026, 12, 2, 12, 6, 30), runs)
    assert [r.name for r in decision.delete] == ["r0", "r1", "r3"]


def test_history_limit_zero_deletes_every_finished_run() -> None:
    none_kept = schedule(successfulRunsHistoryLimit=0, failedRunsHistoryLimit=0)
    runs = [run("a", utc(2026, 12, 2, 12, 0), "Succeeded"),
            run("b", utc(2026, 12, 2, 12, 1), "Failed")]
    decision = decide(none_kept, utc(2026, 12, 2, 12, 1), utc(2026, 12, 2, 12, 1, 1), runs)
    assert [r.name for r in decision.delete] == ["a", "b"]


# -- the cursor in status, the run's name ---------------------------------------------------
def test_the_cursor_is_the_latest_handled_due_time() -> None:
    assert cursor({"lastScheduleTime": "2026-12-02T12:00:00Z",
                   "lastSkipped": {"scheduleTime": "2026-12-02T12:01:00Z"}}) \
        == utc(2026, 12, 2, 12, 1)
    assert cursor({"lastScheduleTime": "2026-12-02T12:00:00Z"}) == utc(2026, 12, 2, 12, 0)
    assert cursor(None) is None
    assert cursor({"name": "s"}) is None


def test_a_recorded_next_time_is_owed_after_an_outage() -> None:
    recorded = cursor({"nextScheduleTime": "2026-12-02T12:01:00Z"})
    decision = decide(schedule(startingDeadlineSeconds=120), recorded,
                      utc(2026, 12, 2, 12, 1, 40))
    assert decision.start == (utc(2026, 12, 2, 12, 1),)


def test_the_run_name_is_the_utc_minute_and_fits_a_label() -> None:
    due = datetime(2026, 12, 2, 18, 1, tzinfo=UTC)
    assert scheduled_run_name("wf", "nightly", due) == "wf-nightly-202612021801"
    long = scheduled_run_name("w" * 63, "s" * 30, due)
    assert len(long) <= 63
    assert long == scheduled_run_name("w" * 63, "s" * 30, due)
    assert long != scheduled_run_name("w" * 63, "s" * 30, due + timedelta(minutes=1))


def test_the_scheduled_run_carries_its_schedule_and_due_time() -> None:
    body = scheduled_run("wf", "s", utc(2026, 12, 2, 12, 1), {"a": 1})
    meta = body["metadata"]
    assert meta["name"] == "wf-s-202612021201"
    assert meta["labels"] == {names.LABEL_WORKFLOW: "wf", names.LABEL_SCHEDULE: "s"}
    assert meta["annotations"] == {names.ANNOTATION_SCHEDULE_TIME: "2026-12-02T12:01:00Z"}
    assert body["spec"]["inputs"] == {"a": 1}
    assert time_text(utc(2026, 12, 2, 12, 1)) == "2026-12-02T12:01:00Z"
