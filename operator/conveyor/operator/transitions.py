"""Pure: the Kubernetes Events a run's new status calls for, given what was last written.

One Event per task phase change and per run phase change, never per heartbeat or per forEach
item, so Events grow with the DAG, not with the work.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

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
