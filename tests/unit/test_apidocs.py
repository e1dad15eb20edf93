"""docs/api.md is generated from the models and current."""

from __future__ import annotations

from pathlib import Path

from conveyor import apidocs, crdgen
from conveyor.models import Workflow, WorkflowRun

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_committed_api_reference_is_current() -> None:
    assert API_MD.read_text() == apidocs.render(), "docs/api.md is stale: run `make docs`"


def test_every_field_is_documented() -> None:
    text = apidocs.render()
    for model in (Workflow, WorkflowRun):
        schema = crdgen.openapi_schema(model)
        for part in ("spec", "status"):
            for path, node, _ in apidocs._rows(schema["properties"][part], part, False):
                if path == part:
                    continue
                assert f"| `{path}` |" in text, path
                assert node.get("description"), path


def test_main_writes_the_reference(capsys) -> None:  # type: ignore[no-untyped-def]
    assert apidocs.main([]) == 0
    assert capsys.readouterr().out == apidocs.render()
