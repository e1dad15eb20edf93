"""`conveyor get RUN`: the failed attempts its status keeps, why each failed."""

from conveyor.cli.runs import attempts_table

RUN = {"status": {"tasks": [
    {"name": "charge", "phase": "Failed", "failedAttempts": [
        {"attempt": 1, "reason": "Error", "errorType": "ConnectionError",
         "message": "ConnectionError: refused", "finishedAt": "2026-12-02T10:00:01Z",
         "retried": True},
        {"attempt": 2, "reason": "NonRetryable", "message": "x" * 300,
         "finishedAt": "2026-12-02T10:00:03Z", "retried": False}]},
    {"name": "fan", "phase": "Running", "failedAttempts": [
        {"attempt": 1, "index": 7, "reason": "Timeout", "finishedAt": "2026-12-02T10:00:05Z",
         "retried": True}]},
    {"name": "fine", "phase": "Succeeded"},
]}}


def test_each_failed_attempt_is_a_row_with_its_reason() -> None:
    text = attempts_table(RUN)
    assert text is not None
    header, *rows = text.splitlines()
    assert header.split()[:4] == ["FAILED", "ATTEMPT", "#", "REASON"]
    assert rows[0].split()[:6] == ["charge", "1", "Error", "ConnectionError",
                                   "2026-12-02T10:00:01Z", "yes"]
    assert rows[1].split()[:5] == ["charge", "2", "NonRetryable", "2026-12-02T10:00:03Z", "no"]
    assert rows[1].endswith("...") and len(rows[1]) < 250, "long messages are cut"
    assert rows[2].split()[:3] == ["fan[7]", "1", "Timeout"]
    assert len(rows) == 3


def test_no_failed_attempt_no_table() -> None:
    assert attempts_table({"status": {"tasks": [{"name": "fine", "phase": "Succeeded"}]}}) is None
    assert attempts_table({}) is None
