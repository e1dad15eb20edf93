"""What the operator knows of Workflows: each one's current generation, compiled once, and the
generations that runs still use.

Runs pin the generation they started with (DESIGN.md §2). The Workflow object only holds its
current spec, so the first run of a generation saves that spec in a ConfigMap owned by the
Workflow (`conveyor-<workflow>-g<generation>`); after a restart, a run of an older generation
is rebuilt from that snapshot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from conveyor import names
from conveyor.children import Owner, child_name
from conveyor.errors import ConveyorError, InvalidSpecError
from conveyor.models import WorkflowSpec
from conveyor.operator.seams import KubeApi
from conveyor.workflow import CompiledWorkflow, WorkflowCache

SNAPSHOT_KEY = "spec.json"


class WorkflowUnavailableError(ConveyorError):
    """A run's Workflow is missing, invalid, or lacks the generation the run started with."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class WorkflowEntry:
    """One Workflow as last seen."""

    owner: Owner
    generation: int
    spec: dict[str, Any]
    compiled: CompiledWorkflow | None
    problem: str | None  # why it cannot run (InvalidSpec), when it cannot
    provisioned: bool = False  # queues and pools of this generation exist: runs may start


def invalid_message(error: ValidationError | InvalidSpecError) -> str:
    """The message of an invalid spec: every problem with its place (`spec.tasks[1].type`)."""
    if isinstance(error, InvalidSpecError):
        return str(error)
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in ("spec", *item["loc"]))
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def snapshot_name(workflow: str, generation: int) -> str:
    return child_name("conveyor", workflow, f"g{generation}")


class Workflows:
    """Every Workflow the operator has seen, by namespace and name, compiled once per
    generation; listeners hear when one appears or changes."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube
        self._cache = WorkflowCache()
        self._entries: dict[tuple[str, str], WorkflowEntry] = {}
        self._snapshotted: set[tuple[str, int]] = set()
        # Snapshot writes under way: the runs that need one wait on the same write, and so
        # resume in the order they asked (their admission order), whenever it answers.
        self._pinning: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._listeners: list[Callable[[str, str], None]] = []

    def on_change(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(namespace, name)` whenever a Workflow appears or changes."""
        self._listeners.append(listener)

    def observe(self, body: dict[str, Any]) -> WorkflowEntry:
        """Record the Workflow `body` (from a watch event) and compile its generation."""
        meta = body["metadata"]
        owner = Owner(meta["namespace"], meta["name"], meta["uid"])
        generation = int(meta.get("generation") or 1)
        key = (owner.namespace, owner.name)
        known = self._entries.get(key)
        if known and known.owner.uid == owner.uid and known.generation == generation:
            return known
        spec_body = dict(body.get("spec") or {})
        compiled: CompiledWorkflow | None = None
        problem: str | None = None
        try:
            spec = WorkflowSpec.model_validate(spec_body)
            compiled = self._cache.get(owner.uid, generation, spec)
        except (ValidationError, InvalidSpecError) as error:
            problem = invalid_message(error)
        entry = WorkflowEntry(owner, generation, spec_body, compiled, problem)
        self._entries[key] = entry
        self._notify(owner.namespace, owner.name)
        return entry

    def provisioned(self, namespace: str, name: str, generation: int) -> None:
        """The reconcile declared the queues of `generation`: its runs may dispatch now."""
        entry = self._entries.get((namespace, name))
        if entry is not None and entry.generation == generation and not entry.provisioned:
            entry.provisioned = True
            self._notify(namespace, name)

    def _notify(self, namespace: str, name: str) -> None:
        for listener in self._listeners:
            listener(namespace, name)

    def forget(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)

    def entries(self) -> list[WorkflowEntry]:
        return list(self._entries.values())

    def get(self, namespace: str, name: str) -> WorkflowEntry | None:
        return self._entries.get((namespace, name))

    def current(self, namespace: str, name: str) -> CompiledWorkflow:
        """The Workflow's current generation, compiled; WorkflowUnavailableError otherwise."""
        entry = self._entries.get((namespace, name))
        if entry is None:
            raise WorkflowUnavailableError(
                "WorkflowNotFound", f"waiting for Workflow {name} in namespace {namespace}")
        if entry.compiled is None:
            raise WorkflowUnavailableError(
                "WorkflowInvalid", f"waiting for Workflow {name} to become valid: "
                                   f"{entry.problem}")
        if not entry.provisioned:
            raise WorkflowUnavailableError(
                "WorkflowNotReady", f"waiting for the worker pools of Workflow {name}")
        return entry.compiled

    async def pin(self, namespace: str, name: str, compiled: CompiledWorkflow) -> None:
        """Keep `compiled`'s spec for the runs that start on it (idempotent, once per
        generation per operator: callers meanwhile share the one write)."""
        key = (compiled.uid, compiled.generation)
        if key in self._snapshotted:
            return
        entry = self._entries.get((namespace, name))
        if entry is None or entry.generation != compiled.generation:
            return  # only the current generation can start runs; it is pinned then
        writing = self._pinning.get(key)
        if writing is None:
            writing = asyncio.ensure_future(self._snapshot(entry, key))
            self._pinning[key] = writing
            writing.add_done_callback(lambda _: self._pinning.pop(key, None))
        await asyncio.shield(writing)

    async def _snapshot(self, entry: WorkflowEntry, key: tuple[str, int]) -> None:
        namespace, name, generation = entry.owner.namespace, entry.owner.name, key[1]
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": snapshot_name(name, generation),
                "namespace": namespace,
                "labels": {names.LABEL_WORKFLOW: name, names.LABEL_MANAGED_BY:
                           names.FIELD_MANAGER},
                "ownerReferences": [entry.owner.reference()],
            },
            "data": {SNAPSHOT_KEY: json.dumps(entry.spec, separators=(",", ":"))},
        }
        await self._kube.apply_config_map(manifest)
        self._snapshotted.add(key)

    async def generation(self, namespace: str, name: str, generation: int) -> CompiledWorkflow:
        """The compiled spec of an exact generation: the current one, or its snapshot."""
        entry = self._entries.get((namespace, name))
        if entry is not None and entry.generation == generation and entry.compiled:
            return entry.compiled
        data = await self._kube.get_config_map_data(namespace, snapshot_name(name, generation))
        if data is None or SNAPSHOT_KEY not in data:
            raise WorkflowUnavailableError(
                "WorkflowGenerationLost",
                f"generation {generation} of Workflow {name} is gone: neither the Workflow "
                f"nor the snapshot ConfigMap {snapshot_name(name, generation)} holds it")
        uid = entry.owner.uid if entry else ""
        try:
            spec = WorkflowSpec.model_validate(json.loads(data[SNAPSHOT_KEY]))
            compiled = self._cache.get(uid, generation, spec)
        except (ValueError, ValidationError, InvalidSpecError) as error:
            raise WorkflowUnavailableError(
                "WorkflowGenerationLost",
                f"snapshot of generation {generation} of Workflow {name} is unusable: "
                f"{error}") from error
        self._snapshotted.add((uid, generation))
        return compiled
