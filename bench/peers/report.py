"""The pure parts of bench/bench_peers.py: medians, ratios, aims, the table, a process's CPU.

No I/O and nothing outside the standard library, so tests/unit/test_bench_peers.py checks it
without a test bed (and the peers' virtualenv could import it too).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Requests = Mapping[tuple[str, str, str], float]
"""`apiserver_request_total` by (verb, resource, subresource), as benchlib.parse_requests."""


@dataclass(frozen=True)
class Aim:
    """What a row should show, on its medians; None: not asked. `ratio` is Conveyor's figure
    over Celery's in the row's unit."""

    text: str
    min_ratio: float | None = None
    max_ratio: float | None = None
    min_value: float | None = None
    max_value: float | None = None

    def met(self, value: float, ratio: float | None) -> bool:
        checks: list[bool] = []
        if self.min_value is not None:
            checks.append(value >= self.min_value)
        if self.max_value is not None:
            checks.append(value <= self.max_value)
        for bound, holds in ((self.min_ratio, lambda r, b: r >= b),
                             (self.max_ratio, lambda r, b: r <= b)):
            if bound is not None:
                checks.append(ratio is not None and holds(ratio, bound))
        return all(checks)


@dataclass
class Row:
    """One workload's figures, one per round on each side (Celery's may be absent)."""

    label: str
    unit: str
    higher_is_better: bool
    aim: Aim | None = None
    conveyor: list[float] = field(default_factory=list)
    celery: list[float] = field(default_factory=list)
    celery_note: str = ""
    """What Celery did for this row, when it is not the same work (the trigger rows)."""
    first: list[str] = field(default_factory=list)
    """Which side ran first in each round."""

    def ratios(self) -> list[float]:
        """Conveyor over Celery per round, in the row's unit (rounds where both ran)."""
        return [k / c for k, c in zip(self.conveyor, self.celery, strict=False) if c > 0]

    def median_ratio(self) -> float | None:
        ratios = self.ratios()
        return statistics.median(ratios) if ratios else None

    def met(self) -> bool | None:
        if self.aim is None or not self.conveyor:
            return None
        return self.aim.met(statistics.median(self.conveyor), self.median_ratio())


def number(value: float) -> str:
    """A figure with about three significant digits and thousands separators."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def reading(ratio: float, higher_is_better: bool) -> str:
    """A ratio (Conveyor over Celery, in the row's unit) in words: how much faster or slower
    Conveyor was."""
    speed = ratio if higher_is_better else 1 / ratio
    if speed >= 1:
        return f"Conveyor {speed:.2f}x faster"
    return f"Conveyor {1 / speed:.2f}x slower"


def ratio_cell(row: Row) -> str:
    ratios = row.ratios()
    if not ratios:
        return "-"
    mid = statistics.median(ratios)
    return (f"{mid:.2f} [{min(ratios):.2f}-{max(ratios):.2f}]: "
            f"{reading(mid, row.higher_is_better)}")


def met_cell(row: Row) -> str:
    met = row.met()
    return "-" if met is None else ("pass" if met else "miss")


def table(rows: Sequence[Row]) -> str:
    """The markdown table: medians of each side, the per-round ratios' median [min-max]."""
    lines = ["| workload | Conveyor | Celery | Conveyor/Celery, median [min-max] | aim | met? |",
             "|---|---:|---:|---|---|---|"]
    for row in rows:
        conveyor = number(statistics.median(row.conveyor)) if row.conveyor else "-"
        celery = number(statistics.median(row.celery)) if row.celery else "-"
        if row.celery_note and row.celery:
            celery = f"{celery} ({row.celery_note})"
        lines.append(f"| {row.label} ({row.unit}) | {conveyor} | {celery} | {ratio_cell(row)} "
                     f"| {row.aim.text if row.aim else '-'} | {met_cell(row)} |")
    return "\n".join(lines)


def rounds(rows: Sequence[Row]) -> str:
    """One line per workload and round: both figures, the ratio, which side went first."""
    lines = []
    for row in rows:
        for i, conveyor in enumerate(row.conveyor):
            celery = row.celery[i] if i < len(row.celery) else None
            first = f", {row.first[i]} first" if i < len(row.first) else ""
            text = f"  {row.label}, round {i + 1}: Conveyor {number(conveyor)} {row.unit}"
            if celery is not None:
                text += (f", Celery {number(celery)} {row.unit}, ratio {conveyor / celery:.2f}"
                         f" ({reading(conveyor / celery, row.higher_is_better)})")
            lines.append(text + first)
    return "\n".join(lines)


def delta(after: Requests, before: Requests) -> dict[tuple[str, str, str], float]:
    """What a counter gained between two readings (keys new since `before` count from 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


WRITES = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY")


def run_writes(gained: Requests) -> dict[str, float]:
    """The API-server writes a workload made, by what they were: WorkflowRun creates, status
    writes, other WorkflowRun writes (metadata: finalizers, annotations) and Events posted.
    Deletes are left out: the bench's own, of the runs between workloads, not a run's cost."""
    out = {"WorkflowRun create": 0.0, "WorkflowRun status": 0.0, "WorkflowRun other": 0.0,
           "Events": 0.0}
    for (verb, resource, subresource), n in gained.items():
        if verb not in WRITES or verb in ("DELETE", "DELETECOLLECTION"):
            continue
        if resource == "workflowruns":
            if subresource == "status":
                out["WorkflowRun status"] += n
            elif verb == "POST" and not subresource:
                out["WorkflowRun create"] += n
            else:
                out["WorkflowRun other"] += n
        elif resource == "events" and verb in ("POST", "PATCH", "PUT"):
            out["Events"] += n
    return out


def cpu_seconds(stat: str, ticks_per_second: float) -> float:
    """utime + stime of a `/proc/<pid>/stat` line, in seconds (all the process's threads)."""
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
