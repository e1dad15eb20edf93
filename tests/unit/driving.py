"""A test driver for the engine: a clock, the run, and the attempts published so far."""

import json
from typing import Any

from conveyor import engine
from conveyor.workflow import CompiledWorkflow

T0 = 1_700_000_000.0


class Driver:
    """Applies events at a controllable time; remembers every action."""

    def __init__(self, workflow: CompiledWorkflow, inputs: dict[str, Any] | None = None,
                 uid: str = "run-1") -> None:
        self.workflow = workflow
        self.inputs = inputs or {}
        self.now = T0
        self.run: engine.RunState = engine.new_run(workflow, uid, self.inputs, self.now)
        self.actions: list[engine.Action] = []

    def apply(self, event: engine.Signal) -> list[engine.Action]:
        actions = engine.apply(self.run, event, self.now)
        self.actions += actions
        return actions

    def start(self) -> list[engine.Action]:
        return self.apply(engine.Start())

    def advance(self, seconds: float) -> list[engine.Action]:
        self.now += seconds
        return self.apply(engine.Tick())

    @property
    def published(self) -> list[engine.Publish]:
        return [a for a in self.actions if isinstance(a, engine.Publish)]

    def ids(self) -> list[str]:
        return [p.attempt_id for p in self.published]

    def succeed(self, attempt_id: str, outputs: Any = None, worker: str = "w") -> list[Any]:
        return self.apply(engine.TaskSucceeded(attempt_id, outputs, worker))

    def fail(self, attempt_id: str, error: str = "boom", retryable: bool = True) -> list[Any]:
        return self.apply(engine.TaskFailed(attempt_id, error, retryable, "w"))

    def started(self, attempt_id: str) -> list[Any]:
        return self.apply(engine.TaskStarted(attempt_id, "w"))

    def status(self) -> dict[str, Any]:
        # Through JSON, as the API server would store it.
        return json.loads(json.dumps(engine.to_status(self.run)))

    def task(self, name: str) -> dict[str, Any]:
        return next(t for t in self.status()["tasks"] if t["name"] == name)

    def rebuild(self) -> None:
        """Replace the run by one rebuilt from its status, as after an operator restart."""
        self.run = engine.from_status(self.workflow, self.run.uid, self.inputs, self.status())
