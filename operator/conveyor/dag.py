"""The task graph of a Workflow: what admission cannot reject, and the order of things.

Admission (the CRD's CEL rules) already rejects duplicate names, dangling references and
self-dependencies; they are checked again here because a spec can reach the operator without
admission (tests, an older CRD, `kubectl replace --validate=false`), and because a cycle check
needs the whole graph, which CEL cannot walk within its cost budget.
"""

from collections.abc import Mapping, Sequence

from conveyor.errors import Problem
from conveyor.models import Task, WorkflowSpec


def validate(spec: WorkflowSpec) -> list[Problem]:
    """Every problem of the spec's graph, each with its place (`spec.tasks[2].dependsOn`)."""
    found: list[Problem] = []
    types = {t.name for t in spec.task_types}
    main = {t.name for t in spec.tasks}
    final = {t.name for t in spec.finally_}
    seen: set[str] = set()
    for i, task_type in enumerate(spec.task_types):
        if task_type.name in seen:
            found.append(Problem(f"spec.taskTypes[{i}].name",
                                 f"duplicate task type name {task_type.name!r}"))
        seen.add(task_type.name)
    seen = set()
    for field, tasks, allowed in (("tasks", spec.tasks, main), ("finally", spec.finally_, final)):
        for i, task in enumerate(tasks):
            place = f"spec.{field}[{i}]"
            if task.name in seen:
                found.append(Problem(f"{place}.name", f"duplicate task name {task.name!r}"))
            seen.add(task.name)
            if task.type not in types:
                found.append(Problem(f"{place}.type",
                                     f"task type {task.type!r} is not in spec.taskTypes"))
            found += _dependency_problems(task, place, allowed, main, field == "finally")
        found += _cycle_problems(tasks, field)
    return found


def _dependency_problems(
    task: Task, place: str, allowed: set[str], main: set[str], is_finally: bool
) -> list[Problem]:
    found = []
    for j, name in enumerate(task.depends_on):
        where = f"{place}.dependsOn[{j}]"
        if name == task.name:
            found.append(Problem(where, f"task {task.name!r} depends on itself"))
        elif is_finally and name in main:
            found.append(Problem(where, f"finally task {task.name!r} depends on {name!r}, a "
                                        "task of spec.tasks; finally tasks run after all of "
                                        "them and may depend only on other finally tasks"))
        elif name not in allowed:
            found.append(Problem(where, f"{name!r} names no task"))
    return found


def _cycle_problems(tasks: Sequence[Task], field: str) -> list[Problem]:
    deps = {t.name: [d for d in t.depends_on if d != t.name] for t in tasks}
    cycle = find_cycle([t.name for t in tasks], deps)
    if cycle is None:
        return []
    index = next(i for i, t in enumerate(tasks) if t.name == cycle[0])
    return [Problem(f"spec.{field}[{index}].dependsOn",
                    f"dependency cycle: {' -> '.join(cycle)} (each depends on the next)")]


def find_cycle(order: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first dependency cycle met, as `[a, b, c, a]` (a depends on b ...), or None.

    Iterative depth-first search in declaration order, so the answer is deterministic and a
    long chain cannot overflow Python's stack. Names missing from `deps` are ignored (they are
    reported as dangling references elsewhere).
    """
    done: set[str] = set()
    for root in order:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(deps.get(root, ()))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif step in on_path:
                return [*path[path.index(step):], step]
            elif step not in done and step in deps:
                path.append(step)
                on_path.add(step)
                stack.append(iter(deps[step]))
    return None


def dependents(order: Sequence[str], deps: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """For each task, the tasks that depend on it, in declaration order."""
    result: dict[str, list[str]] = {name: [] for name in order}
    for name in order:
        for dep in deps.get(name, ()):
            if dep in result and name not in result[dep]:
                result[dep].append(name)
    return result
