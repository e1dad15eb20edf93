"""`outputs RUN TASK [--item N]`: a task's outputs as its dependents see them, the ones
kept in the object store (`{"$ref": ...}` in the status) read back from the user's store."""

from __future__ import annotations

import argparse
from typing import Any

from conveyor import names
from conveyor.cli import objectstore
from conveyor.cli.common import NOT_FOUND, OK, USAGE, CliError, Cluster
from conveyor.cli.render import dump
from conveyor.cli.runs import fetch
from conveyor.store.values import is_ref

SUCCEEDED = "Succeeded"


def task_entry(run: dict[str, Any], task: str) -> dict[str, Any]:
    """The task's entry in the run's status; "not found" naming the tasks there are."""
    status = run.get("status") or {}
    entries = status.get("tasks") or []
    found = next((t for t in entries if t.get("name") == task), None)
    if found is None:
        known = ", ".join(t.get("name", "") for t in entries) or "none yet"
        raise CliError(f"task {task!r} is not in the status of workflowrun "
                       f"{run['metadata']['name']!r} (its tasks: {known})", NOT_FOUND)
    entry: dict[str, Any] = found
    return entry


def held_outputs(entry: dict[str, Any], run: str) -> Any:
    """The outputs the status holds (inline values or references); a plain task that
    succeeded without any has `{}`, as its dependents see it."""
    foreach = "items" in entry
    if "outputs" in entry:
        return entry["outputs"]
    if entry.get("phase") == SUCCEEDED:
        return [] if foreach else {}
    raise CliError(f"task {entry.get('name')!r} of workflowrun {run!r} has no outputs yet "
                   f"(phase {entry.get('phase', 'Pending')})", NOT_FOUND)


def outputs(entry: dict[str, Any], run: str, item: int | None,
            store: objectstore.UserStore) -> Any:
    """What `outputs` prints: the task's outputs, or item `item`'s of a forEach task, with
    every reference read back."""
    name = entry.get("name")
    held = held_outputs(entry, run)
    if item is None:
        return store.resolve(held, f"the outputs of task {name!r}")
    if "items" not in entry:
        raise CliError(f"task {name!r} is not a forEach task: --item needs one", USAGE)
    what = f"item {item} of task {name!r}"
    if is_ref(held):  # every item's outputs in chunks: read them all, pick one
        held = store.resolve(held, f"the item outputs of task {name!r}")
    if not isinstance(held, list):
        raise CliError(f"task {name!r}: its outputs are not a list of item outputs", USAGE)
    total = (entry.get("items") or {}).get("total", len(held))
    if item >= max(total, len(held)):
        raise CliError(f"task {name!r} has {total} item(s): there is no item {item}", NOT_FOUND)
    if item >= len(held) or held[item] is None:
        raise CliError(f"{what} has no outputs yet", NOT_FOUND)
    return store.resolve(held[item], f"the outputs of {what}")


def run_outputs(args: argparse.Namespace, cluster: Cluster) -> int:
    run = fetch(cluster, names.RUN_PLURAL, args.run)
    value = outputs(task_entry(run, args.task), args.run, args.item, objectstore.UserStore())
    print(dump(value, args.output))
    return OK


def _index(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an item index (0, 1, ...)")
    return int(text)


def add_parser(verbs: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    parser = verbs.add_parser(
        "outputs", parents=[common],
        help="print a task's outputs (stored ones read from the object store)")
    parser.add_argument("run", help="the WorkflowRun")
    parser.add_argument("task", help="the task")
    parser.add_argument("--item", type=_index, metavar="N",
                        help="item N's outputs of a forEach task (0 is the first)")
    parser.add_argument("-o", "--output", choices=("json", "yaml"), default="json",
                        help="json (default) or yaml")
    parser.set_defaults(handler=run_outputs)
