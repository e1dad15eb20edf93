"""The soak's table: the fault plan as it happened, the runs, and the four numbers."""

from __future__ import annotations

from soak.schedule import overlapping
from soak.soaking import Result


def _at(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(result: Result) -> str:
    config, verdict = result.config, result.verdict
    lines = ["", "Fault schedule (seconds after the runs were submitted)",
             f"  {'fault':<22}{'killed':>8}{'restart':>9}{'serving':>9}{'away':>7}"
             f"{'ran':>7}  what"]
    for h in result.happened:
        away = (None if h.killed_at is None or h.serving_at is None
                else h.serving_at - h.killed_at)
        what = h.what + (f"  ERROR {h.error}" if h.error else "")
        done = "-" if h.done_at_kill is None else f"{h.done_at_kill / result.tasks:.0%}"
        lines.append(f"  {h.fault!s:<22}{_at(h.killed_at):>8}{_at(h.restarted_at):>9}"
                     f"{_at(h.serving_at):>9}{_at(away):>7}{done:>7}  {what}")
    pairs = overlapping([h.fault for h in result.happened])
    if pairs:
        lines.append("  overlapping: " + ", ".join(f"{a} & {b}" for a, b in pairs))
    lines.append(f"  every part serving again at {_at(result.healed_at)} s; ran: executions "
                 "in the ledger at the kill, of all tasks (re-executions count)")
    lines += ["", f"Runs: {config.runs} x {config.items} items = {result.tasks} tasks on "
              f"{config.replicas} workers x {config.concurrency}"
              + (f", {config.task_seconds:g} s each" if config.task_seconds else "")
              + f" (namespace {result.namespace})",
              f"  {'run':<10}{'phase':<11}{'executions':>11}{'lost':>7}{'double':>8}"
              f"{'re-exec':>9}{'attempts':>10}{'started@':>10}"]
    for r in verdict.runs:
        lines.append(f"  {r.name:<10}{r.phase:<11}{r.executions:>11}{r.lost:>7}"
                     f"{r.double_applied:>8}{r.re_executed:>9}{r.attempts:>10}"
                     f"{_at(result.first_status.get(r.name)):>10}")
        lines += [f"    {note}" for note in r.notes]
    lines.append("  started@: seconds after submission when the run's status first showed it "
                 "started (its dispatch persisted)")
    lines += [f"  stuck: {detail}" for detail in result.stuck_detail]
    exits = ", ".join(f"#{e.number} {'killed' if e.by_soak else 'exited'} (code {e.code})"
                      for e in result.operator_exits) or "none"
    lines.append(f"  operator processes: {len(result.operator_exits) + 1}; exits: {exits}")
    lines.append(f"  worker container restarts: {_count(result.container_restarts)}")
    if result.queues is not None:
        lines.append("  queues (ready/unacked): " + ", ".join(
            f"{name.removeprefix('conveyor.')}={ready}/{unacked}"
            for name, (ready, unacked) in sorted(result.queues.items())))
    drained = result.events_drained
    lines.append("  operator's events queue: " + (
        f"empty {drained:.1f} s after the verdict's read" if drained is not None
        else "NOT EMPTY 30 s after the runs ended: the operator stopped consuming"))
    if verdict.strays:
        lines.append(f"  executions of no submitted item: {verdict.strays}")
    busy = result.busy_seconds
    lines += [
        "",
        "Result",
        f"  lost            {verdict.lost}",
        f"  stuck           {verdict.stuck}   (bound {config.stuck_bound:.0f} s after the "
        "last fault healed)",
        f"  double-applied  {verdict.double_applied}",
        f"  re-executed     {verdict.re_executed}   (allowed: at least once; "
        f"{verdict.redelivered} ran an attempt already run)",
        f"  not succeeded   {verdict.not_succeeded}   (terminal runs that failed: the tasks "
        "never fail)",
        f"  total time      {result.seconds:.1f} s from submitting to the verdict; every "
        f"run terminal at {_at(result.all_terminal)} s"
        + (f"; busy {busy:.1f} s by the runs' status (from the start that was persisted)"
           if busy else ""),
        f"  throughput      {result.tasks / result.all_terminal:.0f} tasks/s from submitting to "
        "the last run's end" + (f", {result.tasks / busy:.0f} over the busy time" if busy else "")
        if result.all_terminal else "  throughput      - (not every run finished)",
        f"  output          {result.out} (operator logs, ledger)",
        "",
        "PASS: nothing lost, stuck or applied twice" if verdict.ok else
        "FAIL: lost, stuck, double-applied and not-succeeded must all be 0",
    ]
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)
