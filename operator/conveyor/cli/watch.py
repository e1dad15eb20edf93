"""`conveyor watch RUN`: the run's DAG with each task's phase, attempts and duration, redrawn in
place until the run ends.

`frame` is pure (a run object and the Workflow's graph in, lines out) so it is tested without a
cluster. On a terminal the frame is redrawn over the previous one with ANSI cursor movement and
carries live clocks; otherwise (a pipe, a CI log) clocks are left out and a frame is printed
only when it differs from the last, so the log reads as a list of changes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from conveyor import names
from conveyor.cli.common import FAILED, NOT_FOUND, OK, CliError, Cluster, kube_failed
from conveyor.cli.render import duration, parse_time, table
from conveyor.kube import KubeError

TERMINAL_RUN = frozenset(("Succeeded", "Failed", "Cancelled"))
ACTIVE = frozenset(("Queued", "Running", "Retrying"))
MARK = {"Succeeded": "[+]", "Failed": "[x]", "Running": "[>]", "Queued": "[.]",
        "Retrying": "[~]", "Skipped": "[-]", "Cancelled": "[!]", "Pending": "[ ]"}
# SGR colours by phase; the whole line takes its task's colour.
COLOUR = {"Succeeded": "32", "Failed": "31", "Running": "36", "Queued": "36",
          "Retrying": "33", "Skipped": "2", "Cancelled": "35", "Pending": "2", "title": "1"}
MESSAGE_WIDTH = 60


@dataclass(frozen=True)
class Graph:
    """What the frame needs of the Workflow: each task's dependencies, which are finally."""

    depends_on: Mapping[str, list[str]] = field(default_factory=dict)
    finally_names: frozenset[str] = frozenset()
    order: tuple[str, ...] = ()

    @classmethod
    def of(cls, workflow: Mapping[str, Any] | None) -> Graph:
        spec = (workflow or {}).get("spec") or {}
        main, final = spec.get("tasks") or [], spec.get("finally") or []
        return cls({t["name"]: list(t.get("dependsOn") or []) for t in [*main, *final]},
                   frozenset(t["name"] for t in final),
                   tuple(t["name"] for t in [*main, *final]))


def _elapsed(start: str | None, end: str | None, now: float | None) -> str:
    begin = parse_time(start)
    finish = parse_time(end)
    if begin is None:
        return ""
    if finish is None:
        return "" if now is None else duration(now - begin)
    return duration(finish - begin)


def _detail(task: Mapping[str, Any]) -> str:
    items = task.get("items")
    text = ""
    if items:
        text = f"items {items.get('succeeded', 0)}/{items.get('total', 0)}"
        if items.get("running"):
            text += f", {items['running']} running"
        if items.get("failed"):
            text += f", {items['failed']} failed"
    message = task.get("message") or ""
    if task.get("reason") and task.get("phase") in ("Skipped", "Failed", "Cancelled"):
        message = f"{task['reason']}: {message}" if message else task["reason"]
    text = "; ".join(t for t in (text, message) if t)
    return text if len(text) <= MESSAGE_WIDTH else text[: MESSAGE_WIDTH - 3] + "..."


def frame(run: Mapping[str, Any], graph: Graph, now: float | None) -> list[tuple[str, str]]:
    """The lines of one frame, each with its style (a phase, `title` or ``).

    `now` drives the clocks of what is still running; None leaves them out, so that two
    frames of an unchanged run are equal.
    """
    meta, spec = run.get("metadata") or {}, run.get("spec") or {}
    status = run.get("status") or {}
    phase = status.get("phase") or "Pending"
    tasks = {t["name"]: t for t in status.get("tasks") or []}
    order = [*tasks] + [n for n in graph.order if n not in tasks]
    workflow = (spec.get("workflowRef") or {}).get("name", "?")
    clock = _elapsed(status.get("startedAt"), status.get("finishedAt"),
                     None if phase in TERMINAL_RUN else now)
    progress = status.get("progress") or f"0/{len(order)}"
    title = f"{meta.get('name', '?')}  workflow {workflow}  {phase}  {progress}"
    lines: list[tuple[str, str]] = [(title + (f"  {clock}" if clock else ""), "title")]
    rows, styles = [], []
    for section in (False, True):
        chosen = [n for n in order if (n in graph.finally_names) == section]
        if section and chosen:
            rows.append(["finally:", "", "", "", "", ""])
            styles.append("")
        for name in chosen:
            task = tasks.get(name) or {"name": name, "phase": "Pending"}
            task_phase = task.get("phase", "Pending")
            live = now if task_phase in ACTIVE else None
            took = ("reused" if task.get("reason") == "Reused"
                    else _elapsed(task.get("startedAt"), task.get("finishedAt"), live))
            rows.append([f"{MARK.get(task_phase, '[?]')} {name}", task_phase,
                         str(task.get("attempts", 0)), took,
                         ",".join(graph.depends_on.get(name, [])), _detail(task)])
            styles.append(task_phase)
    body = table(["    TASK", "PHASE", "ATTEMPTS", "DURATION", "AFTER", "MESSAGE"], rows)
    for i, text in enumerate(body.splitlines()):
        lines.append((text, "" if i == 0 else styles[i - 1]))
    if status.get("message"):
        lines.append((f"message: {status['message']}", ""))
    return lines


def paint(lines: list[tuple[str, str]], colour: bool, width: int | None = None) -> str:
    """Lines as text: cut to `width` (a wrapped line would break the redraw), coloured."""
    out = []
    for line, style in lines:
        text = line if width is None or len(line) <= width else line[: max(0, width - 1)]
        code = COLOUR.get(style) if colour else None
        out.append(f"\x1b[{code}m{text}\x1b[0m" if code else text)
    return "\n".join(out)


def follow(cluster: Cluster, name: str, out: TextIO, *, interval: float = 0.5,
           live: bool | None = None) -> int:
    """Draw the run until it ends: 0 if it Succeeded, 1 otherwise."""
    live = out.isatty() if live is None else live
    kube, namespace = cluster.kube, cluster.namespace
    graph: Graph | None = None
    drawn, last = 0, ""
    while True:
        try:
            run = kube.get_object(names.RUN_PLURAL, namespace, name)
            if run is None:
                raise CliError(f"workflowrun {name!r} not found in namespace {namespace}",
                               NOT_FOUND)
            if graph is None:
                workflow = (run.get("spec") or {}).get("workflowRef", {}).get("name", "")
                graph = Graph.of(kube.get_object(names.WORKFLOW_PLURAL, namespace, workflow))
        except KubeError as error:
            raise kube_failed(error) from error
        lines = frame(run, graph, time.time() if live else None)
        if live:
            width = shutil.get_terminal_size().columns
            # Up to the first line of the previous frame, clear to the end, draw anew.
            out.write((f"\x1b[{drawn}F\x1b[J" if drawn else "") + paint(lines, True, width)
                      + "\n")
            drawn = len(lines)
        else:
            text = paint(lines, False)
            if text != last:
                out.write(("\n" if last else "") + text + "\n")
                last = text
        out.flush()
        phase = (run.get("status") or {}).get("phase")
        if phase in TERMINAL_RUN:
            return OK if phase == "Succeeded" else FAILED
        time.sleep(interval)


def add_parser(verbs: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    parser = verbs.add_parser("watch", parents=[common], help="follow a run live until it ends",
                              description="Show the run's tasks with phase, attempts and "
                              "duration, redrawn as they change; exit 0 if the run Succeeded, "
                              "1 if it Failed or was Cancelled.")
    parser.add_argument("run", help="the WorkflowRun")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    parser.set_defaults(handler=run_watch)


def run_watch(args: argparse.Namespace, cluster: Cluster) -> int:
    return follow(cluster, args.run, sys.stdout, interval=args.interval)
