"""A Workflow generation compiled for running: graph resolved, expressions compiled once.

`compile_workflow` turns a validated spec into a `CompiledWorkflow`, or raises
`InvalidSpecError` listing every problem with its place; the operator reports that as
`Ready=False, reason=InvalidSpec`. A `WorkflowCache` keeps one compiled object per
(uid, generation), since runs pin the generation they started with.

Compiling stops after MAX_PROBLEMS problems and refuses more than `expr.MAX_EXPRESSIONS`
expressions: a hostile spec must not cost a compile per field without end, nor a message
longer than a condition can hold. A `forEach` yields at most
MAX_FOR_EACH_ITEMS items: beyond that its item outputs could never fit the task's outputs
limit, and the run would only find out after dispatching them.
"""

import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor import dag, names, schedules
from conveyor.errors import ExpressionError, InvalidSpecError, Problem
from conveyor.expr import MAX_EXPRESSIONS, OPEN, Template, compile_template, key_path
from conveyor.metering import Meter
from conveyor.models import (
    DELETION_COST,
    RESERVED_LABELS,
    RESERVED_MOUNT_DIR,
    RESERVED_VOLUME_PREFIX,
    LabelSelector,
    PodTemplate,
    Retry,
    Schedule,
    Task,
    Trigger,
    WorkflowSpec,
)

MAX_PROBLEMS = 50
MAX_FOR_EACH_ITEMS = 100_000


@dataclass(frozen=True)
class CompiledTask:
    """One task of the run's graph, by position (tasks first, then finally tasks)."""

    position: int
    name: str
    path: str  # its place in the spec, for messages: `spec.tasks[2]`
    type: str
    is_finally: bool
    depends_on: tuple[int, ...]
    dependents: tuple[int, ...]
    inputs: Template
    when: Template | None
    for_each: Template | None
    max_parallel: int | None
    timeout_ms: int | None
    retry: Retry

    def backoff_ms(self, failed_attempt: int) -> int:
        """Delay after attempt `failed_attempt` (from 1) fails: exponential, capped."""
        retry = self.retry
        delay = retry.backoff_seconds * retry.backoff_factor ** (failed_attempt - 1)
        return round(min(delay, retry.max_backoff_seconds) * 1000)


@dataclass(frozen=True)
class CompiledKafka:
    """A Kafka trigger's topic, and its templates on `record` (None: every record starts a
    run; the run is named from topic, partition and offset)."""

    topic: str
    filter: Template | None
    key: Template | None


@dataclass(frozen=True)
class CompiledTrigger:
    """An event pattern (or a Kafka topic) and the run inputs it yields."""

    pattern: str | None
    inputs: Template
    kafka: CompiledKafka | None = None


@dataclass(frozen=True)
class CompiledSchedule:
    """A cron schedule (its policy is `conveyor.schedules.decide`'s) and its run inputs'
    template on `schedule` (`name`, `time`)."""

    spec: Schedule
    inputs: Template


@dataclass(frozen=True)
class CompiledWorkflow:
    """Everything the engine needs from one Workflow generation."""

    uid: str
    generation: int
    tasks: tuple[CompiledTask, ...]
    main_count: int  # tasks[:main_count] are spec.tasks, the rest spec.finally
    by_name: Mapping[str, CompiledTask]
    outputs: Template
    deadline_ms: int | None
    max_active_runs: int | None
    triggers: tuple[CompiledTrigger, ...]
    schedules: tuple[CompiledSchedule, ...] = ()


def compile_workflow(spec: WorkflowSpec, uid: str = "", generation: int = 0) -> CompiledWorkflow:
    """Compile a spec, or raise InvalidSpecError naming every problem and its place."""
    problems = dag.validate(spec)
    problems += [p for i, t in enumerate(spec.task_types) if t.pod_template is not None
                 for p in pod_template_problems(t.pod_template,
                                                f"spec.taskTypes[{i}].podTemplate")]
    problems += [p for i, s in enumerate(spec.schedules)
                 for p in schedules.problems(s, f"spec.schedules[{i}]")]
    if problems:
        raise InvalidSpecError(problems)
    declared = [(f"spec.tasks[{i}]", t, False) for i, t in enumerate(spec.tasks)]
    declared += [(f"spec.finally[{i}]", t, True) for i, t in enumerate(spec.finally_)]
    position = {task.name: i for i, (_, task, _) in enumerate(declared)}
    order = [task.name for _, task, _ in declared]
    after = dag.dependents(order, {t.name: t.depends_on for _, t, _ in declared})
    compiler = _Compiler(set(order))
    tasks = tuple(
        compiler.task(i, path=path, task=task, is_finally=is_finally, position=position,
                      after=after[task.name])
        for i, (path, task, is_finally) in enumerate(declared)
    )
    outputs = compiler.template(spec.outputs, "spec.outputs")
    triggers = tuple(compiler.trigger(t, f"spec.triggers[{i}]")
                     for i, t in enumerate(spec.triggers))
    compiled_schedules = tuple(
        CompiledSchedule(s, compiler.template(s.inputs, f"spec.schedules[{i}].inputs"))
        for i, s in enumerate(spec.schedules))
    if compiler.problems:
        raise InvalidSpecError(compiler.result())
    return CompiledWorkflow(
        uid=uid,
        generation=generation,
        tasks=tasks,
        main_count=len(spec.tasks),
        by_name={t.name: t for t in tasks},
        outputs=outputs,
        deadline_ms=spec.deadline_seconds * 1000 if spec.deadline_seconds else None,
        max_active_runs=spec.max_active_runs,
        triggers=triggers,
        schedules=compiled_schedules,
    )


class _Compiler:
    """Collects every problem instead of stopping at the first, so one fix cycle suffices."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.problems: list[Problem] = []
        self.expressions = 0  # compiled so far, at most MAX_EXPRESSIONS in all

    def template(self, value: Any, path: str, expression_only: bool = False) -> Template:
        if len(self.problems) >= MAX_PROBLEMS:
            return compile_template(None, path)  # reported as "and more" at the end
        if expression_only and (not isinstance(value, str) or OPEN not in value):
            self.problems.append(Problem(path, f"must be a {OPEN} CEL }}}} expression"))
        try:
            template = compile_template(value, path, MAX_EXPRESSIONS - self.expressions)
            self.expressions += len(template.expressions)
        except ExpressionError as error:
            where = f"expression {error.expression!r}: " if error.expression else ""
            self.problems.append(Problem(error.path, where + error.reason))
            return compile_template(None, path)
        for name in sorted(template.task_refs or ()):
            if name not in self.names:
                self.problems.append(Problem(path, f"tasks.{name} names no task"))
        return template

    def result(self) -> list[Problem]:
        if len(self.problems) <= MAX_PROBLEMS:
            return self.problems
        return [*self.problems[:MAX_PROBLEMS],
                Problem("spec", f"more problems not shown (at most {MAX_PROBLEMS} are)")]

    def trigger(self, trigger: Trigger, path: str) -> CompiledTrigger:
        inputs = self.template(trigger.inputs, f"{path}.inputs")
        source = trigger.kafka
        if source is None:
            return CompiledTrigger(trigger.event, inputs)
        kafka = CompiledKafka(
            source.topic,
            filter=None if source.filter is None
            else self.template(source.filter, f"{path}.kafka.filter", True),
            key=None if source.key is None
            else self.template(source.key, f"{path}.kafka.key", True))
        return CompiledTrigger(None, inputs, kafka)

    def task(
        self,
        i: int,
        *,
        path: str,
        task: Task,
        is_finally: bool,
        position: Mapping[str, int],
        after: list[str],
    ) -> CompiledTask:
        when = task.when
        for_each = task.for_each
        return CompiledTask(
            position=i,
            name=task.name,
            path=path,
            type=task.type,
            is_finally=is_finally,
            depends_on=tuple(position[d] for d in task.depends_on),
            dependents=tuple(position[d] for d in after),
            inputs=self.template(task.inputs, f"{path}.inputs"),
            when=None if when is None else self.template(when, f"{path}.when", True),
            for_each=(
                None if for_each is None
                else _bounded(self.template(for_each, f"{path}.forEach", True),
                              f"{path}.forEach")
            ),
            max_parallel=task.max_parallel,
            timeout_ms=task.timeout_seconds * 1000 if task.timeout_seconds else None,
            retry=task.retry,
        )


def _bounded(template: Template, path: str) -> Template:
    """A forEach template whose list may not exceed MAX_FOR_EACH_ITEMS."""
    if template.static:
        return template
    source = template.expressions[0].source

    def render(variables: Mapping[str, Any], meter: Meter) -> Any:
        value = template.renderer(variables, meter)
        if isinstance(value, list) and len(value) > MAX_FOR_EACH_ITEMS:
            raise ExpressionError(path, source, f"yields {len(value)} items; a forEach may "
                                                f"have at most {MAX_FOR_EACH_ITEMS}")
        return value

    return Template(render, template.expressions)


# Kubernetes' syntax of label keys (and annotation keys): an optional DNS subdomain prefix
# and `/`, then a name of at most 63 characters; of label values: at most 63, the same set.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on a pod's annotations, in all


def _key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        return "the prefix of a key must be a DNS subdomain (lower case, at most 253)"
    if not name or len(name) > 63 or not _QUALIFIED.fullmatch(name):
        return ("the name of a key must be at most 63 letters, digits, '-', '_' or '.', "
                "beginning and ending with a letter or digit")
    return None


def _value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _QUALIFIED.fullmatch(value)):
        return ("a label value must be empty or at most 63 letters, digits, '-', '_' or '.', "
                "beginning and ending with a letter or digit")
    return None


def _label_problems(labels: Mapping[str, str] | None, path: str,
                    values: bool = True) -> Iterator[Problem]:
    for key, value in (labels or {}).items():
        place = key_path(path, key)
        why = _key_problem(key) or (_value_problem(value) if values else None)
        if why is not None:
            yield Problem(place, why)


def _relative_problem(path: str) -> str | None:
    if path.startswith("/"):
        return "must be a relative path"
    if ".." in path.split("/"):
        return "must not contain a '..' element"
    return None


def _selectors(template: PodTemplate) -> Iterator[tuple[str, LabelSelector]]:
    affinity = template.affinity
    if affinity is None:
        return
    for field, kind in (("podAffinity", affinity.pod_affinity),
                        ("podAntiAffinity", affinity.pod_anti_affinity)):
        if kind is None:
            continue
        place = f"affinity.{field}"
        terms = [(f"{place}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", term)
                 for i, term in enumerate(
                     kind.required_during_scheduling_ignored_during_execution or [])]
        terms += [(f"{place}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
                   ".podAffinityTerm", weighted.pod_affinity_term)
                  for i, weighted in enumerate(
                      kind.preferred_during_scheduling_ignored_during_execution or [])]
        for where, term in terms:
            if term.label_selector is not None:
                yield f"{where}.labelSelector", term.label_selector
            if term.namespace_selector is not None:
                yield f"{where}.namespaceSelector", term.namespace_selector


def _file_paths(template: PodTemplate) -> Iterator[tuple[str, str]]:
    """(place, path) of every file a volume of the template writes."""
    for i, volume in enumerate(template.volumes or []):
        place = f"volumes[{i}]"
        for kind, source in (("secret", volume.secret), ("configMap", volume.config_map)):
            for j, item in enumerate(source.items or [] if source is not None else []):
                yield f"{place}.{kind}.items[{j}].path", item.path
        if volume.downward_api is not None:
            for j, file in enumerate(volume.downward_api.items):
                yield f"{place}.downwardAPI.items[{j}].path", file.path
        for j, projection in enumerate(volume.projected.sources if volume.projected else []):
            where = f"{place}.projected.sources[{j}]"
            for kind, keys in (("secret", projection.secret),
                               ("configMap", projection.config_map)):
                for k, item in enumerate(keys.items or [] if keys is not None else []):
                    yield f"{where}.{kind}.items[{k}].path", item.path
            if projection.downward_api is not None:
                for k, file in enumerate(projection.downward_api.items):
                    yield f"{where}.downwardAPI.items[{k}].path", file.path
            if projection.service_account_token is not None:
                yield f"{where}.serviceAccountToken.path", projection.service_account_token.path


def pod_template_problems(template: PodTemplate, path: str) -> list[Problem]:
    """What the API server would refuse in the worker Deployment built from `template` (so
    the operator could never apply it), or what would take the operator's own places in the
    pod; each problem with its place. Admission's CEL rules reject the latter already; the
    syntax of keys and paths is checked here only."""
    found: list[Problem] = []
    found += _label_problems(template.labels, f"{path}.labels")
    found += _label_problems(template.annotations, f"{path}.annotations", values=False)
    found += _label_problems(template.node_selector, f"{path}.nodeSelector")
    for place, selector in _selectors(template):
        found += _label_problems(selector.match_labels, f"{path}.{place}.matchLabels")
    size = sum(len(k) + len(v) for k, v in (template.annotations or {}).items())
    if size > MAX_ANNOTATIONS_BYTES:
        found.append(Problem(f"{path}.annotations", f"{size} bytes in all; the API server "
                             f"takes at most {MAX_ANNOTATIONS_BYTES}"))
    for key in template.labels or {}:
        if key.startswith(f"{names.GROUP}/") or key in RESERVED_LABELS:
            found.append(Problem(key_path(f"{path}.labels", key),
                                 "the operator's label: it selects the pool's pods by it"))
    for key in template.annotations or {}:
        if key.startswith(f"{names.GROUP}/") or key == DELETION_COST:
            found.append(Problem(key_path(f"{path}.annotations", key),
                                 "the operator's annotation"))
    declared = [v.name for v in template.volumes or []]
    for i, name in enumerate(declared):
        if name.startswith(RESERVED_VOLUME_PREFIX):
            found.append(Problem(f"{path}.volumes[{i}].name", f"names beginning "
                                 f"{RESERVED_VOLUME_PREFIX} are the operator's"))
        if name in declared[:i]:
            found.append(Problem(f"{path}.volumes[{i}].name", f"duplicate volume {name!r}"))
    seen: set[str] = set()
    for i, mount in enumerate(template.volume_mounts or []):
        place = f"{path}.volumeMounts[{i}]"
        if mount.name not in declared:
            found.append(Problem(f"{place}.name", f"{mount.name!r} names no entry of "
                                 f"{path}.volumes"))
        target = mount.mount_path.rstrip("/") or "/"
        if target == RESERVED_MOUNT_DIR or target.startswith(RESERVED_MOUNT_DIR + "/"):
            found.append(Problem(f"{place}.mountPath", f"{RESERVED_MOUNT_DIR} is the "
                                 "operator's (its CAs are mounted there)"))
        if target in seen:
            found.append(Problem(f"{place}.mountPath", f"duplicate mountPath {target!r}"))
        seen.add(target)
        why = _relative_problem(mount.sub_path) if mount.sub_path else None
        if why is not None:
            found.append(Problem(f"{place}.subPath", why))
    for place, file in _file_paths(template):
        why = _relative_problem(file)
        if why is not None:
            found.append(Problem(f"{path}.{place}", why))
    return found


def match_topic(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split on `.`, `*` matches one word, `#` zero or more."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


def trigger_inputs(workflow: CompiledWorkflow, routing_key: str, event: Any) -> list[Any]:
    """Run inputs for each trigger the event matches, in declaration order.

    Raises ExpressionError when a trigger's inputs fail to evaluate on this event.
    """
    return [
        trigger.inputs.render({"event": event})
        for trigger in workflow.triggers
        if trigger.pattern is not None and match_topic(trigger.pattern, routing_key)
    ]


class WorkflowCache:
    """Compiled workflows by (uid, generation), least recently used dropped beyond `size`."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, int], CompiledWorkflow] = OrderedDict()

    def get(self, uid: str, generation: int, spec: WorkflowSpec) -> CompiledWorkflow:
        """The compiled form of this generation, compiling it on first use."""
        key = (uid, generation)
        found = self._entries.get(key)
        if found is None:
            found = compile_workflow(spec, uid, generation)
            self._entries[key] = found
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return found
