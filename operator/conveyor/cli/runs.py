"""`get RUN`, `get workflow/NAME`, `list [runs|workflows]` and `cancel RUN`: reading runs and
Workflows, and patching spec.cancel. `get` also lists the run's objects in the object store when
the user configured one, and the worker pools that cannot run their pods (their reason)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from conveyor import names
from conveyor.cli import objectstore
from conveyor.cli.common import NOT_FOUND, OK, CliError, Cluster, kube_failed
from conveyor.cli.render import FORMATS, age, dump, table
from conveyor.cli.watch import MESSAGE_WIDTH, TERMINAL_RUN, Graph, frame, paint
from conveyor.kube import KubeError


def fetch(cluster: Cluster, plural: str, name: str) -> dict[str, Any]:
    """The object, or a "not found" CliError naming it and the namespace."""
    kind = "workflowrun" if plural == names.RUN_PLURAL else "workflow"
    try:
        found = cluster.kube.get_object(plural, cluster.namespace, name)
    except KubeError as error:
        raise kube_failed(error) from error
    if found is None:
        raise CliError(f"{kind} {name!r} not found in namespace {cluster.namespace}", NOT_FOUND)
    return found


WORKFLOW_PREFIXES = ("workflow/", "workflows/", "cwf/")


def pools_table(workflow: dict[str, Any] | None, *, troubled_only: bool) -> str | None:
    """The Workflow's worker pools from its status, each with the reason its pods cannot
    run; None when there is nothing to show (with `troubled_only`: no pool in trouble)."""
    pools = ((workflow or {}).get("status") or {}).get("taskTypes") or []
    if not pools or (troubled_only and not any(p.get("reason") for p in pools)):
        return None
    return table(["POOL", "REPLICAS", "READY", "BACKLOG", "IN FLIGHT", "REASON", "MESSAGE"],
                 [[p.get("name"), p.get("replicas", 0), p.get("readyReplicas", 0),
                   p.get("backlog", 0), p.get("inFlight", 0), p.get("reason", ""),
                   p.get("message", "")] for p in pools])


def attempts_table(run: dict[str, Any]) -> str | None:
    """The failed attempts the run's status keeps (the latest of each task), each with why
    it failed and whether another followed; None when no attempt failed."""
    rows = []
    for task in (run.get("status") or {}).get("tasks") or []:
        for failed in task.get("failedAttempts") or []:
            item = f"[{failed['index']}]" if failed.get("index") is not None else ""
            message = failed.get("message") or ""
            rows.append([f"{task['name']}{item}", failed.get("attempt"), failed.get("reason"),
                         failed.get("errorType", ""), failed.get("finishedAt", ""),
                         "yes" if failed.get("retried") else "no",
                         message if len(message) <= MESSAGE_WIDTH
                         else message[: MESSAGE_WIDTH - 3] + "..."])
    if not rows:
        return None
    return table(["FAILED ATTEMPT", "#", "REASON", "ERROR TYPE", "FINISHED", "RETRIED",
                  "MESSAGE"], rows)


def workflow_view(workflow: dict[str, Any]) -> str:
    """`conveyor get workflow/NAME`: its conditions, then its pools."""
    status = workflow.get("status") or {}
    lines = [f"{workflow['metadata']['name']}  generation "
             f"{workflow['metadata'].get('generation', '?')}  active runs "
             f"{status.get('activeRuns', 0)}"]
    conditions = status.get("conditions") or []
    if conditions:
        lines.append(table(["CONDITION", "STATUS", "REASON", "MESSAGE"],
                           [[c.get("type"), c.get("status"), c.get("reason", ""),
                             c.get("message", "")] for c in conditions]))
    pools = pools_table(workflow, troubled_only=False)
    if pools is not None:
        lines += ["", pools]
    return "\n".join(lines)


def _workflow_get(args: argparse.Namespace, cluster: Cluster, name: str) -> int:
    workflow = fetch(cluster, names.WORKFLOW_PLURAL, name)
    print(dump(workflow, args.output) if args.output != "table" else workflow_view(workflow))
    return OK


def run_get(args: argparse.Namespace, cluster: Cluster) -> int:
    for prefix in WORKFLOW_PREFIXES:
        if args.run.startswith(prefix):
            return _workflow_get(args, cluster, args.run.removeprefix(prefix))
    run = fetch(cluster, names.RUN_PLURAL, args.run)
    if args.output != "table":
        print(dump(run, args.output))
        return OK
    workflow = (run.get("spec") or {}).get("workflowRef", {}).get("name", "")
    found: dict[str, Any] | None = None
    try:
        found = cluster.kube.get_object(names.WORKFLOW_PLURAL, cluster.namespace, workflow)
        graph = Graph.of(found)
    except KubeError:
        graph = Graph()  # the table still reads well without the dependencies
    print(paint(frame(run, graph, time.time()), colour=False))
    attempts = attempts_table(run)
    if attempts is not None:  # why each attempt failed, and whether it was retried
        print(f"\n{attempts}")
    pools = pools_table(found, troubled_only=True)
    if pools is not None:  # why its tasks may wait: the pods of a pool cannot run
        print(f"\n{pools}")
    objects, note = objectstore.UserStore().listing(run)
    if objects is not None:
        print(f"\n{objects}")
    if note is not None:
        print(note, file=sys.stderr)
    return OK


def _run_row(run: dict[str, Any], now: float) -> list[object]:
    status = run.get("status") or {}
    return [run["metadata"]["name"], (run.get("spec") or {}).get("workflowRef", {}).get("name"),
            status.get("phase", "Pending"), status.get("progress", ""),
            age(run["metadata"].get("creationTimestamp"), now)]


def _workflow_row(workflow: dict[str, Any], now: float) -> list[object]:
    status = workflow.get("status") or {}
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    spec = workflow.get("spec") or {}
    return [workflow["metadata"]["name"], ready.get("status", "Unknown"),
            len(spec.get("tasks") or []) + len(spec.get("finally") or []),
            status.get("activeRuns", 0), age(workflow["metadata"].get("creationTimestamp"), now),
            _reason(ready, status)]


def _reason(ready: dict[str, Any], status: dict[str, Any]) -> str:
    """Why a Workflow is not well: Ready's reason when False, else PoolsHealthy's."""
    if ready.get("status") == "False":
        return str(ready.get("reason", ""))
    pools: dict[str, Any] = next((c for c in status.get("conditions") or []
                                  if c.get("type") == "PoolsHealthy"), {})
    return str(pools.get("reason", "")) if pools.get("status") == "False" else ""


def run_list(args: argparse.Namespace, cluster: Cluster) -> int:
    plural = names.WORKFLOW_PLURAL if args.what == "workflows" else names.RUN_PLURAL
    try:
        items = cluster.kube.list_objects(plural, cluster.namespace)
    except KubeError as error:
        raise kube_failed(error) from error
    if plural == names.RUN_PLURAL and args.workflow:
        items = [r for r in items
                 if (r.get("spec") or {}).get("workflowRef", {}).get("name") == args.workflow]
    items.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""),
                              o["metadata"]["name"]))
    if args.output != "table":
        print(dump(items, args.output))
        return OK
    if not items:
        print(f"No {plural} in namespace {cluster.namespace}.", file=sys.stderr)
        return OK
    now = time.time()
    if plural == names.RUN_PLURAL:
        print(table(["NAME", "WORKFLOW", "PHASE", "PROGRESS", "AGE"],
                    [_run_row(r, now) for r in items]))
    else:
        print(table(["NAME", "READY", "TASKS", "ACTIVE", "AGE", "REASON"],
                    [_workflow_row(w, now) for w in items]))
    return OK


def run_cancel(args: argparse.Namespace, cluster: Cluster) -> int:
    run = fetch(cluster, names.RUN_PLURAL, args.run)
    phase = (run.get("status") or {}).get("phase")
    if phase in TERMINAL_RUN:
        print(f"workflowrun/{args.run} already ended: {phase}")
        return OK
    try:
        cluster.kube.patch_object(names.RUN_PLURAL, cluster.namespace, args.run,
                                  {"spec": {"cancel": True}})
    except KubeError as error:
        raise kube_failed(error) from error
    print(f"workflowrun/{args.run} cancel requested")
    return OK


def add_parsers(verbs: argparse._SubParsersAction[Any], common: argparse.ArgumentParser,
                output: argparse.ArgumentParser) -> None:
    get = verbs.add_parser("get", parents=[common, output],
                           help="show a run and its tasks, or a Workflow and its pools")
    get.add_argument("run", help="the WorkflowRun, or workflow/NAME for a Workflow")
    get.set_defaults(handler=run_get)

    listing = verbs.add_parser("list", parents=[common, output],
                               help="list runs (default) or workflows")
    listing.add_argument("what", nargs="?", choices=("runs", "workflows"), default="runs")
    listing.add_argument("--workflow", "-w", help="only the runs of this Workflow")
    listing.set_defaults(handler=run_list)

    cancel = verbs.add_parser("cancel", parents=[common], help="cancel a run (spec.cancel=true)")
    cancel.add_argument("run", help="the WorkflowRun")
    cancel.set_defaults(handler=run_cancel)


__all__ = ["FORMATS", "add_parsers", "attempts_table", "fetch", "pools_table", "workflow_view"]
