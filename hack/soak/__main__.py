"""`python -m soak` (PYTHONPATH=hack; `make soak SOAK_ARGS=...`): the fault soak, see the
package. Exits 0 only if nothing was lost, stuck, applied twice, or failed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from soak import report, schedule
from soak.soaking import Config, soak


def main(argv: list[str] | None = None) -> int:
    defaults = Config()
    parser = argparse.ArgumentParser(prog="soak", description=__doc__)
    parser.add_argument("--runs", type=int, default=defaults.runs, help="WorkflowRuns (5)")
    parser.add_argument("--items", type=int, default=defaults.items,
                        help="forEach items per run (10000)")
    parser.add_argument("--faults", default=defaults.plan,
                        help="the plan, TARGET@START[+DOWN],... in seconds after the runs "
                             f"are submitted; targets: {', '.join(schedule.TARGETS)}; "
                             "'' for none "
                             f"(default {defaults.plan!r})")
    parser.add_argument("--replicas", type=int, default=defaults.replicas,
                        help="worker pods (3)")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency,
                        help="tasks in flight per worker (32)")
    parser.add_argument("--stuck-bound", type=float, default=defaults.stuck_bound,
                        help="seconds after the last fault healed by which every run must "
                             "be terminal (120)")
    parser.add_argument("--task-seconds", type=float, default=defaults.task_seconds,
                        help="how long each task works (0): more keeps more tasks in flight "
                             "when a fault lands")
    parser.add_argument("--no-ledger-sync", action="store_true",
                        help="skip the fdatasync per ledger line (still safe against kills)")
    parser.add_argument("--ci", action="store_true",
                        help="the e2e variant's sizes and plan (3 x 2000 items, 2 x 8 "
                             f"workers, {schedule.CI_PLAN}); other flags are ignored")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the ledger and operator logs (.soak/<time>)")
    args = parser.parse_args(argv)
    try:
        schedule.parse(args.faults)
    except schedule.PlanError as error:
        parser.error(str(error))
    config = Config.ci(args.out) if args.ci else Config(
        runs=args.runs, items=args.items, plan=args.faults, replicas=args.replicas,
        concurrency=args.concurrency, stuck_bound=args.stuck_bound,
        ledger_sync=not args.no_ledger_sync, task_seconds=args.task_seconds, out=args.out)
    result = soak(config, say=lambda line: print(line, flush=True))
    print(report.render(result), flush=True)
    return 0 if result.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
