"""Confirm bookkeeping: tags, `multiple`, resending in order, and the Confirmation handle."""

from __future__ import annotations

import threading

import pytest

from conveyor.broker.confirms import Confirmation, ConfirmTracker


def test_tags_count_from_one_and_single_settles_take_one():
    tracker: ConfirmTracker[str] = ConfirmTracker()
    assert [tracker.sent(m) for m in "abc"] == [1, 2, 3]
    assert tracker.settle(2, multiple=False) == ["b"]
    assert tracker.settle(2, multiple=False) == []
    assert len(tracker) == 2


def test_multiple_settles_every_tag_up_to_it_oldest_first():
    tracker: ConfirmTracker[str] = ConfirmTracker()
    for m in "abcde":
        tracker.sent(m)
    tracker.settle(2, multiple=False)
    assert tracker.settle(4, multiple=True) == ["a", "c", "d"]
    assert tracker.settle(9, multiple=True) == ["e"]
    assert len(tracker) == 0


def test_reset_returns_the_unsettled_in_order_and_restarts_numbering():
    tracker: ConfirmTracker[str] = ConfirmTracker()
    for m in "abcd":
        tracker.sent(m)
    tracker.settle(1, multiple=False)
    tracker.settle(3, multiple=False)
    assert tracker.reset() == ["b", "d"]
    assert tracker.sent("x") == 1


def test_a_confirmation_calls_back_once_whenever_the_callback_was_added():
    seen: list[str] = []
    confirmation = Confirmation()
    confirmation.add_done_callback(lambda c: seen.append("before"))
    confirmation.confirm()
    confirmation.fail(RuntimeError("late"))  # settled already: ignored
    confirmation.add_done_callback(lambda c: seen.append("after"))
    assert seen == ["before", "after"]
    assert confirmation.done() and confirmation.exception() is None
    confirmation.result()


def test_a_failed_confirmation_raises_its_error():
    confirmation = Confirmation()
    confirmation.fail(ValueError("nacked"))
    with pytest.raises(ValueError, match="nacked"):
        confirmation.result()


def test_waiting_times_out_or_wakes_when_settled_from_another_thread():
    confirmation = Confirmation()
    with pytest.raises(TimeoutError):
        confirmation.result(timeout=0.01)
    settler = threading.Timer(0.01, confirmation.confirm)
    settler.start()
    confirmation.result(timeout=10)
    settler.join()
