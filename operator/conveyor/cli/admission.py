"""The API server's admission of a Workflow or WorkflowRun, offline, in its own words.

The CRD's structural schema is checked with the pydantic models the CRDs are generated from,
strictly (the API server does not coerce "5" to 5); the CRD's own CEL
`x-kubernetes-validations` are evaluated with the same CEL library the operator uses; then the
operator's `compile_workflow` (cycles, `${{ }}` syntax), as its `Ready=False,
reason=InvalidSpec` condition would say it. Each problem comes with its place in the object
(`spec.tasks[2].dependsOn`), for `conveyor lint` to map to a line.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import cel
from pydantic import BaseModel, ValidationError

from conveyor import crdgen, names
from conveyor.errors import InvalidSpecError
from conveyor.expr import key_path
from conveyor.models import WorkflowRunSpec, WorkflowSpec
from conveyor.workflow import compile_workflow

Segment = str | int
Path_ = tuple[Segment, ...]

SCHEMA_TYPES = {"int": "integer", "string": "string", "bool": "boolean", "float": "number",
                "list": "array", "dict": "object", "model": "object", "model_attributes":
                "object"}
_LITERAL = re.compile(r"'([^']*)'")  # the values pydantic lists in a literal_error
_SEGMENT = re.compile(r'([^.\[\]]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


# --- places ------------------------------------------------------------------------------


def parse_path(text: str) -> Path_:
    """`spec.tasks[2].dependsOn` -> ("spec", "tasks", 2, "dependsOn"); a key quoted as JSON
    (`inputs["a.b"]`, see `expr.key_path`) is one segment."""
    return tuple(int(m[2]) if m[2] else json.loads(m[3]) if m[3] else m[1]
                 for m in _SEGMENT.finditer(text))


def format_path(path: Sequence[Segment]) -> str:
    """The inverse of parse_path: odd keys quoted as the operator's messages quote them."""
    text = ""
    for segment in path:
        text = f"{text}[{segment}]" if isinstance(segment, int) else key_path(text, segment)
    return text.lstrip(".")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


# --- admission: the structural schema --------------------------------------------------------


def _resolve(data: Any, loc: Sequence[Segment], keep_last: bool) -> tuple[Path_, Any]:
    """The part of a pydantic location that exists in the data, and the value there. pydantic
    appends union members (`int`, `str`) to a location; those are not places."""
    path: list[Segment] = []
    value = data
    for i, segment in enumerate(loc):
        inside = (isinstance(value, dict) and segment in value) or (
            isinstance(value, list) and isinstance(segment, int) and segment < len(value))
        if inside:
            value = value[segment]
        else:
            if keep_last and i == len(loc) - 1:
                path.append(segment)
            break
        path.append(segment)
    return tuple(path), value


def schema_message(kind: str, field: str, value: Any, ctx: dict[str, Any], fallback: str) -> str:
    """A pydantic error in the words of the API server's schema validation."""
    shown = json.dumps(value, default=str)
    if kind == "missing":
        return f"{field}: Required value"
    if kind == "extra_forbidden":
        return f'unknown field "{field}"'
    if kind.endswith("_type") and kind.removesuffix("_type") in SCHEMA_TYPES:
        actual = _json_type(value)
        expected = SCHEMA_TYPES[kind.removesuffix("_type")]
        return (f'{field}: Invalid value: "{actual}": {field} in body must be of type '
                f'{expected}: "{actual}"')
    if kind == "literal_error":  # an enum of strings
        if not isinstance(value, str):
            return schema_message("string_type", field, value, ctx, fallback)
        supported = ", ".join(json.dumps(v) for v in _LITERAL.findall(ctx["expected"]))
        return f"{field}: Unsupported value: {shown}: supported values: {supported}"
    if kind == "string_pattern_mismatch":
        return f"{field}: Invalid value: {shown}: {field} in body should match '{ctx['pattern']}'"
    if kind == "string_too_short":
        return (f"{field}: Invalid value: {shown}: {field} in body should be at least "
                f"{ctx['min_length']} chars long")
    if kind == "string_too_long":
        return f"{field}: Too long: may not be more than {ctx['max_length']} bytes"
    if kind == "too_short":
        return (f"{field}: Invalid value: {len(value)}: {field} in body should have at least "
                f"{ctx['min_length']} items")
    if kind == "too_long":
        return f"{field}: Too many: {len(value)}: must have at most {ctx['max_length']} items"
    bounds = {"greater_than_equal": ("ge", "greater than or equal to"),
              "less_than_equal": ("le", "less than or equal to"),
              "greater_than": ("gt", "greater than"), "less_than": ("lt", "less than")}
    if kind in bounds:
        key, words = bounds[kind]
        return f"{field}: Invalid value: {shown}: {field} in body should be {words} {ctx[key]}"
    return f"{field}: Invalid value: {shown}: {fallback}"


def schema_problems(model: type[BaseModel], spec: Any) -> list[tuple[Path_, str]]:
    found: dict[Path_, str] = {}
    try:
        model.model_validate(spec, strict=True)
    except ValidationError as error:
        for problem in error.errors():
            kind = problem["type"]
            path, value = _resolve(spec, problem["loc"], kind == "missing")
            full = ("spec", *path)
            if full not in found:  # a union reports once per member: keep the first
                found[full] = schema_message(kind, format_path(full), value,
                                             dict(problem.get("ctx") or {}), problem["msg"])
    return list(found.items())


# --- admission: the CRD's CEL rules ------------------------------------------------------


@functools.cache
def _program(rule: str) -> Any:
    return cel.compile(rule)


@functools.cache
def _schemas() -> dict[str, dict[str, Any]]:
    """Kind -> openAPIV3Schema of the CRDs generated from the models, as `make crds` writes
    them (not read from crds/, which an installed CLI does not have)."""
    out = {}
    for crd in crdgen.crds().values():
        version = crd["spec"]["versions"][0]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def cel_problems(schema: dict[str, Any], value: Any, path: Path_) -> list[tuple[Path_, str]]:
    """Every `x-kubernetes-validations` rule and `set` or `map` list under `schema` that
    `value` breaks, as the API server words them. Transition rules (oldSelf) need the stored
    object: skipped."""
    found: list[tuple[Path_, str]] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"]:
            continue
        message = rule["message"]
        try:
            passed = _program(rule["rule"]).execute({"self": value})
        except Exception as error:  # the library raises builtin types for evaluation errors
            passed, message = False, f"{message} ({error})"
        if passed is not True:
            where = (*path, *parse_path(rule.get("fieldPath", "")))
            found.append((where, f"{format_path(where)}: Invalid value: {message}"))
    if isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type in ("set", "map"):
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: list[Any] = []
            for i, item in enumerate(value):
                # A map list is unique by its keys, and the API server shows only them.
                shown = ({k: item.get(k) for k in keys} if list_type == "map"
                         and isinstance(item, dict) else item)
                if shown in seen:
                    found.append(((*path, i), f"{format_path((*path, i))}: Duplicate value: "
                                              f"{json.dumps(shown, separators=(',', ':'))}"))
                seen.append(shown)
        for i, item in enumerate(value):
            found += cel_problems(schema.get("items") or {}, item, (*path, i))
    elif isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key, extra if isinstance(extra, dict) else None)
            if child is not None:
                found += cel_problems(child, item, (*path, key))
    return found


def _huge_numbers(value: Any) -> list[tuple[Path_, int]]:
    """Integers outside int64, with their places; without recursion."""
    found: list[tuple[Path_, int]] = []
    stack: list[tuple[Path_, Any]] = [(("spec",), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend(((*path, k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend(((*path, i), v) for i, v in enumerate(item))
        elif isinstance(item, int) and not isinstance(item, bool) and not (
                -(2**63) <= item < 2**63):
            found.append((path, item))
    return sorted(found, key=lambda entry: format_path(entry[0]))


def _short(number: int) -> str:
    digits = len(str(abs(number))) if number.bit_length() < 10_000 else "many"
    return f"an integer of {digits} digits"


# --- the stages, per object ----------------------------------------------------------------


def object_problems(obj: dict[str, Any]) -> list[tuple[Path_, str, str]]:
    """(place, message, stage) for one Workflow or WorkflowRun; [] for other kinds."""
    kind = obj.get("kind")
    api_version = str(obj.get("apiVersion", ""))
    if kind not in (names.WORKFLOW_KIND, names.RUN_KIND) or not api_version.startswith(
            names.GROUP + "/"):
        return []
    if api_version != names.API_VERSION:
        return [(("apiVersion",), f'no matches for kind "{kind}" in version "{api_version}"',
                 "admission")]
    found: list[tuple[Path_, str, str]] = []
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        return [(("metadata",), f'metadata: Invalid value: "{_json_type(metadata)}": '
                 'metadata in body must be of type object', "admission")]
    if not metadata.get("name") and not metadata.get("generateName"):
        found.append((("metadata", "name"), "metadata.name: Required value: name or "
                      "generateName is required", "admission"))
    if "spec" not in obj:
        return [*found, (("spec",), "spec: Required value", "admission")]
    model = WorkflowSpec if kind == names.WORKFLOW_KIND else WorkflowRunSpec
    schema = [(p, m, "admission") for p, m in schema_problems(model, obj["spec"])]
    if schema:  # the API server skips its CEL rules then ("some validation rules were not
        return found + schema  # checked because the object was invalid"), and so do we
    out_of_range = _huge_numbers(obj["spec"])
    if out_of_range:  # the API server cannot decode them; CEL could not take them either
        return found + [(p, f"{format_path(p)}: Invalid value: {_short(v)}: out of the range "
                         "of a 64-bit integer", "admission") for p, v in out_of_range]
    rules = _schemas()[kind]["properties"]["spec"]
    found += [(p, m, "admission") for p, m in cel_problems(rules, obj["spec"], ("spec",))]
    if found or kind != names.WORKFLOW_KIND:
        return found  # admission would reject it: the operator never sees it
    try:
        compile_workflow(WorkflowSpec.model_validate(obj["spec"]))
    except InvalidSpecError as error:
        found += [(parse_path(p.path), str(p), "operator") for p in error.problems]
    return found
