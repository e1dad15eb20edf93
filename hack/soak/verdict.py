"""What the ledger and the runs' status say together (pure): the soak's four numbers.

- lost: items of which the ledger holds no execution (a run that says Succeeded for one is
  lost too: its result came from nowhere);
- stuck: runs not terminal when the soak stopped waiting (a bound after the last fault);
- double-applied: results a status holds more often than once, read three ways from the
  forEach task's entry: an index twice (or out of place) in its outputs, a `succeeded` count
  above the items whose state is Succeeded, and above the outputs it holds; the largest of
  the three, per run (one double application can show in one, two or all of them);
- re-executed: executions beyond the first of each item (allowed: at least once), of which
  `redelivered` ran an attempt id already run (the same message again) and the rest a new
  attempt of the item.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.engine.status import decode_runs
from conveyor.errors import InvalidStatusError
from soak.ledger import Execution

TERMINAL = ("Succeeded", "Failed", "Cancelled")


@dataclass(frozen=True)
class RunView:
    """A run as the soak last read it."""

    name: str
    uid: str
    items: int
    status: Mapping[str, Any]


@dataclass(frozen=True)
class RunVerdict:
    name: str
    phase: str
    executions: int
    lost: int
    double_applied: int
    re_executed: int
    redelivered: int
    attempts: int
    """Attempts the status counts for the forEach task (items plus retries and re-dispatches)."""
    notes: tuple[str, ...] = ()

    @property
    def stuck(self) -> bool:
        return self.phase not in TERMINAL


@dataclass(frozen=True)
class Verdict:
    runs: tuple[RunVerdict, ...]
    strays: int = 0
    """Executions of no submitted run's item (another run's uid, an index out of range)."""
    notes: tuple[str, ...] = field(default=())

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.runs)

    @property
    def stuck(self) -> int:
        return sum(r.stuck for r in self.runs)

    @property
    def double_applied(self) -> int:
        return sum(r.double_applied for r in self.runs)

    @property
    def re_executed(self) -> int:
        return sum(r.re_executed for r in self.runs)

    @property
    def redelivered(self) -> int:
        return sum(r.redelivered for r in self.runs)

    @property
    def not_succeeded(self) -> int:
        """Terminal runs that did not succeed: the soak's tasks never fail, so each is a
        fault the system let through (an item dead-lettered, say)."""
        return sum(1 for r in self.runs if r.phase in TERMINAL and r.phase != "Succeeded")

    @property
    def ok(self) -> bool:
        return self.lost == self.stuck == self.double_applied == self.not_succeeded == 0


def judge(runs: Iterable[RunView], executions: Iterable[Execution],
          task: str = "fan") -> Verdict:
    """Compare every run's status with the executions the ledger holds for it."""
    views = {run.uid: run for run in runs}
    by_run: dict[str, list[Execution]] = defaultdict(list)
    strays = 0
    for execution in executions:
        run = views.get(execution.run_uid)
        if run is None or not 0 <= execution.index < run.items:
            strays += 1
        else:
            by_run[execution.run_uid].append(execution)
    verdicts = tuple(_judge_run(run, by_run[uid], task) for uid, run in views.items())
    return Verdict(verdicts, strays)


def _judge_run(run: RunView, executions: list[Execution], task: str) -> RunVerdict:
    executed = {e.index for e in executions}
    attempts = Counter(e.attempt for e in executions)
    entry: Mapping[str, Any] = next(
        (t for t in run.status.get("tasks") or [] if t.get("name") == task), {})
    double, notes = _double_applied(entry, run.items)
    return RunVerdict(
        name=run.name,
        phase=str(run.status.get("phase") or "Pending"),
        executions=len(executions),
        lost=run.items - len(executed),
        double_applied=double,
        re_executed=len(executions) - len(executed),
        redelivered=sum(n - 1 for n in attempts.values()),
        attempts=int(entry.get("attempts") or 0),
        notes=tuple(notes),
    )


def _double_applied(entry: Mapping[str, Any], total: int) -> tuple[int, list[str]]:
    notes: list[str] = []
    outputs = list(entry.get("outputs") or [])
    items = entry.get("items") or {}
    indexes = Counter(o.get("i") for o in outputs if isinstance(o, dict))
    twice = sum(n - 1 for n in indexes.values() if n > 1)
    misplaced = sum(1 for k, o in enumerate(outputs) if isinstance(o, dict) and o.get("i") != k)
    held = len(indexes)
    succeeded = int(items.get("succeeded") or 0)
    try:
        states = decode_runs(str(items.get("states") or ""))
    except InvalidStatusError as error:
        notes.append(f"item states unreadable: {error}")
        states = []
    in_state = states.count("S")
    if twice:
        notes.append(f"{twice} indexes more than once in the outputs")
    if misplaced:
        notes.append(f"{misplaced} outputs at another item's place")
    if succeeded > in_state:
        notes.append(f"succeeded={succeeded} but {in_state} items in state Succeeded")
    if succeeded > held:
        notes.append(f"succeeded={succeeded} but {held} distinct outputs held")
    if succeeded > total:
        notes.append(f"succeeded={succeeded} of {total} items")
    return max(twice, misplaced, succeeded - in_state, succeeded - held, 0), notes
