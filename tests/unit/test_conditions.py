"""Conditions keep their transition time unless their status flips."""

from conveyor.conditions import find, set_condition

T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:05:00Z"


def test_a_new_condition_is_appended_with_now() -> None:
    got = set_condition([{"type": "Other", "status": "True"}], "Ready", "False", "InvalidSpec",
                        "spec.tasks[1].dependsOn: cycle", 3, now=T1)
    assert got[1] == {"type": "Ready", "status": "False", "reason": "InvalidSpec",
                      "message": "spec.tasks[1].dependsOn: cycle", "lastTransitionTime": T1,
                      "observedGeneration": 3}
    assert got[0] == {"type": "Other", "status": "True"}


def test_same_status_keeps_the_transition_time_and_position() -> None:
    first = set_condition([], "Ready", "True", "Provisioned", "", now=T1)
    again = set_condition(first, "Ready", "True", "Provisioned", "3 pools", now=T2)
    assert find(again, "Ready") == {**first[0], "message": "3 pools"}


def test_a_flip_moves_the_transition_time() -> None:
    first = set_condition([], "Ready", "True", "Provisioned", "", now=T1)
    flipped = set_condition(first, "Ready", "False", "InvalidSpec", "bad", now=T2)
    assert find(flipped, "Ready")["lastTransitionTime"] == T2  # type: ignore[index]
    assert len(flipped) == 1


def test_without_a_clock_the_current_time_is_used() -> None:
    (condition,) = set_condition([], "Ready", "True", "Provisioned", "")
    assert condition["lastTransitionTime"].endswith("Z")
