"""The committed CRDs are the generated ones, and the generated ones are structural."""

from pathlib import Path
from typing import Any

import pytest

from conveyor import crdgen

REPO = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    for filename, crd in crdgen.crds().items():
        committed = (REPO / "crds" / filename).read_text()
        assert committed == crdgen.render(crd), f"crds/{filename} is stale: run `make crds`"


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    assert crdgen.main([str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0
    victim = next(tmp_path.iterdir())
    victim.write_text(victim.read_text() + "# edited\n")
    assert crdgen.main(["--check", str(tmp_path)]) == 1


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, sub in node.get("properties", {}).items():
            found += _walk(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found += _walk(node[key], f"{path}[]")
    return found


@pytest.mark.parametrize("filename", list(crdgen.crds()))
def test_schema_is_structural_and_documented(filename: str) -> None:
    crd = crdgen.crds()[filename]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not {"$ref", "anyOf", "title", "$defs", "allOf", "oneOf"} & node.keys(), path
        assert node.get("additionalProperties") is not False, path
        free = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        assert "type" in node or free, f"{path}: untyped"
        if path.split(".")[1:2] in (["spec"], ["status"]) and not path.endswith("[]"):
            assert node.get("description"), f"{path}: no description"
    # Unknown fields are kept only where free-form JSON is the point.
    kept = sorted(p for p, n in _walk(schema) if n.get("x-kubernetes-preserve-unknown-fields"))
    # spec.reuse maps task names to reused outputs: each value is a task's outputs.
    assert all(p.endswith(("inputs", "outputs", ".spec.reuse[]")) for p in kept), kept
    assert version["subresources"] == {"status": {}}
    status = [n for p, n in _walk(schema) if p.startswith(".status")]
    assert status and not any("default" in n for n in status)
    assert crd["spec"]["names"]["categories"] == ["conveyor"]


def test_printer_columns_and_short_names() -> None:
    columns = {
        crd["spec"]["names"]["shortNames"][0]: [
            c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        ]
        for crd in crdgen.crds().values()
    }
    assert columns == {
        "cwf": ["Ready", "Task types", "Active", "Age"],
        "cwr": ["Workflow", "Phase", "Progress", "Age"],
    }


def test_admission_rules_name_their_field() -> None:
    for crd in crdgen.crds().values():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            for entry in node.get("x-kubernetes-validations", []):
                field = entry.get("fieldPath", "").lstrip(".").split(".")[-1]
                leaf = path.rsplit(".", 1)[-1].rstrip("[]")
                assert field in entry["message"] or leaf in entry["message"], entry
