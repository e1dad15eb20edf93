"""Celery's side of bench/bench_peers.py, run under the peers' virtualenv (which has Celery;
the product's has not): one workload per invocation, its result as one JSON line on stdout.

    python celery_driver.py ping [--timeout S]        until a worker answers a ping
    python celery_driver.py fanout N                  a group of N no-ops, every result got
    python celery_driver.py chain N                   a chain of N no-ops, its result got
    python celery_driver.py chains N                  N chains of 3 no-ops sent at once, every
                                                      result got

`seconds` is from just before the first message is sent to the last result received, as a
Celery user sees it (and as Conveyor's figures run from the first create to the last
finishedAt). Needs the environment of celery_tasks.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from celery import chain, group  # type: ignore[import-not-found, unused-ignore]
from celery.result import ResultSet  # type: ignore[import-not-found, unused-ignore]
from celery_tasks import app, noop


def ping(timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)
        if replies:
            return {"workers": len(replies)}
    raise SystemExit(f"no Celery worker answered a ping in {timeout:.0f}s")


def fanout(n: int, timeout: float) -> dict[str, Any]:
    began = time.time()
    result = group(noop.s() for _ in range(n)).apply_async()
    values = result.get(timeout=timeout)
    seconds = time.time() - began
    if len(values) != n:
        raise SystemExit(f"the group returned {len(values)} of {n} results")
    return {"seconds": seconds, "n": n}


def one_chain(n: int, timeout: float) -> dict[str, Any]:
    began = time.time()
    chain(noop.s() for _ in range(n)).apply_async().get(timeout=timeout)
    return {"seconds": time.time() - began, "n": n}


def chains(n: int, timeout: float) -> dict[str, Any]:
    began = time.time()
    results = [chain(noop.s(), noop.s(), noop.s()).apply_async() for _ in range(n)]
    sent = time.time()
    ResultSet(results).get(timeout=timeout)
    return {"seconds": time.time() - began, "n": n, "send_seconds": sent - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workload", choices=["ping", "fanout", "chain", "chains"])
    parser.add_argument("n", type=int, nargs="?", default=0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    if args.workload == "ping":
        out = ping(args.timeout)
    else:
        out = {"fanout": fanout, "chain": one_chain, "chains": chains}[args.workload](
            args.n, args.timeout)
    print(json.dumps(out), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
