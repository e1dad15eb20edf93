"""The Kubernetes Events of a run: which ones a new status calls for (pure), and posting them.

One Event per task phase change and per run phase change, never per heartbeat or per forEach
item, so Events grow with the DAG, not with the work.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from conveyor.kube import KubeError
from conveyor.operator.runs.records import RunRef
from conveyor.operator.seams import KubeApi

log = logging.getLogger("conveyor.operator.runs")

RUN_KEY = ""  # the run's own phase, among the task names (which are never empty)

Post = tuple[str, str, str]  # (type, reason, message)


def transitions(written: MutableMapping[str, str], status: dict[str, Any]) -> list[Post]:
    """Events for what changed since `written` (task name -> phase), which is updated."""
    posts: list[Post] = []
    for task in status.get("tasks") or []:
        phase = task.get("phase", "")
        if written.get(task["name"]) == phase:
            continue
        written[task["name"]] = phase
        if phase == "Pending":
            continue
        detail = f": {task['message']}" if task.get("message") else ""
        posts.append((_kind(phase), f"Task{phase}",
                      f"task {task['name']} {phase.lower()}{detail}"))
    phase = status.get("phase", "")
    if written.get(RUN_KEY) != phase:
        written[RUN_KEY] = phase
        detail = f": {status['message']}" if status.get("message") else ""
        posts.append((_kind(phase), f"Run{phase}", f"run {phase.lower()}{detail}"))
    return posts


def _kind(phase: str) -> str:
    return "Warning" if phase == "Failed" else "Normal"


async def post(kube: KubeApi, ref: RunRef, posts: list[Post]) -> None:
    """Post each Event on the run; one that fails is logged and dropped (Events are news,
    not state: the status holds what matters)."""
    for kind, reason, message in posts:
        try:
            await kube.post_event(ref.involved(), kind, reason, message)
        except KubeError as error:
            log.debug("Event not posted run=%s error=%s", ref.name, error)
