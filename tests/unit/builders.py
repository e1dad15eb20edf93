"""Small builders for Workflow specs in unit tests: only what a test cares about is written."""

from typing import Any

from conveyor.models import WorkflowSpec
from conveyor.workflow import CompiledWorkflow, compile_workflow


def task(name: str, *deps: str, type: str = "pool", **fields: Any) -> dict[str, Any]:
    """A task dict; keyword fields use the API's camelCase names."""
    return {"name": name, "type": type, "dependsOn": list(deps), **fields}


def spec(*tasks: dict[str, Any], final: list[dict[str, Any]] | None = None,
         **fields: Any) -> WorkflowSpec:
    """A spec whose task types are the ones its tasks name."""
    every = [*tasks, *(final or [])]
    types = sorted({t["type"] for t in every} | {"pool"})
    return WorkflowSpec.model_validate({
        "taskTypes": [{"name": n, "image": "example.com/w:1"} for n in types],
        "tasks": list(tasks),
        "finally": final or [],
        **fields,
    })


def compiled(*tasks: dict[str, Any], final: list[dict[str, Any]] | None = None,
             **fields: Any) -> CompiledWorkflow:
    """A compiled workflow with uid `wf` and generation 1."""
    return compile_workflow(spec(*tasks, final=final, **fields), "wf", 1)
