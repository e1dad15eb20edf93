"""`conveyor lint FILE...`: what the API server and the operator would say about manifests,
said offline, each problem at its file and line.

Three stages, in the order a manifest meets them, each stopping the next as the real one does:

    admission  the CRD's structural schema (checked with the pydantic models the CRDs are
               generated from, strictly: the API server does not coerce "5" to 5) and the
               CRD's own CEL `x-kubernetes-validations`, evaluated here with the same CEL
               library the operator uses; messages in the API server's words
    operator   `compile_workflow`: cycles, `${{ }}` syntax, references inside expressions;
               messages as the Workflow's `Ready=False, reason=InvalidSpec` condition says them

A problem's place (`spec.tasks[2].dependsOn`) is mapped to a line through the YAML node tree
(`yaml.compose`), so an editor can jump to it.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cel
import yaml
from pydantic import BaseModel, ValidationError

from conveyor import crdgen, names
from conveyor.cli.common import FAILED, OK
from conveyor.cli.render import dump
from conveyor.errors import InvalidSpecError
from conveyor.models import WorkflowRunSpec, WorkflowSpec
from conveyor.workflow import compile_workflow

Segment = str | int
Path_ = tuple[Segment, ...]

SCHEMA_TYPES = {"int": "integer", "string": "string", "bool": "boolean", "float": "number",
                "list": "array", "dict": "object", "model": "object", "model_attributes":
                "object"}
SUFFIXES = (".yaml", ".yml", ".json")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Finding:
    """One problem `conveyor lint` found, with its file, line and the stage that found it."""

    file: str
    line: int
    stage: str  # yaml | admission | operator
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.stage}] {self.message}"


# --- places ------------------------------------------------------------------------------


def parse_path(text: str) -> Path_:
    """`spec.tasks[2].dependsOn` -> ("spec", "tasks", 2, "dependsOn")."""
    return tuple(int(m[2]) if m[2] else m[1] for m in _SEGMENT.finditer(text))


def format_path(path: Sequence[Segment]) -> str:
    text = ""
    for segment in path:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return text.lstrip(".")


def locate(node: yaml.Node, path: Sequence[Segment]) -> int:
    """Line (from 1) of the deepest node of `path` that exists: a map entry's key, a list's
    item; where the path leaves the document, the line of its last node that is there."""
    line = node.start_mark.line + 1
    for segment in path:
        if isinstance(node, yaml.MappingNode) and isinstance(segment, str):
            entry = next(((k, v) for k, v in node.value if k.value == segment), None)
            if entry is None:
                break
            line, node = entry[0].start_mark.line + 1, entry[1]
        elif (isinstance(node, yaml.SequenceNode) and isinstance(segment, int)
              and segment < len(node.value)):
            node = node.value[segment]
            line = node.start_mark.line + 1
        else:
            break
    return line


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
    shown = json.dumps(value)
    if kind == "missing":
        return f"{field}: Required value"
    if kind == "extra_forbidden":
        return f'unknown field "{field}"'
    if kind.endswith("_type") and kind.removesuffix("_type") in SCHEMA_TYPES:
        actual = _json_type(value)
        expected = SCHEMA_TYPES[kind.removesuffix("_type")]
        return (f'{field}: Invalid value: "{actual}": {field} in body must be of type '
                f'{expected}: "{actual}"')
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
    """Every `x-kubernetes-validations` rule and `set` list under `schema` that `value` breaks,
    as the API server words them. Transition rules (oldSelf) need the stored object: skipped."""
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
        if schema.get("x-kubernetes-list-type") == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    found.append(((*path, i), f"{format_path((*path, i))}: Duplicate value: "
                                              f"{json.dumps(item)}"))
                seen.append(item)
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
    if not metadata.get("name") and not metadata.get("generateName"):
        found.append((("metadata", "name"), "metadata.name: Required value: name or "
                      "generateName is required", "admission"))
    if "spec" not in obj:
        return [*found, (("spec",), "spec: Required value", "admission")]
    model = WorkflowSpec if kind == names.WORKFLOW_KIND else WorkflowRunSpec
    schema = [(p, m, "admission") for p, m in schema_problems(model, obj["spec"])]
    if schema:  # the API server skips its CEL rules then ("some validation rules were not
        return found + schema  # checked because the object was invalid"), and so do we
    rules = _schemas()[kind]["properties"]["spec"]
    found += [(p, m, "admission") for p, m in cel_problems(rules, obj["spec"], ("spec",))]
    if found or kind != names.WORKFLOW_KIND:
        return found  # admission would reject it: the operator never sees it
    try:
        compile_workflow(WorkflowSpec.model_validate(obj["spec"]))
    except InvalidSpecError as error:
        found += [(parse_path(p.path), str(p), "operator") for p in error.problems]
    return found


def lint_text(text: str, filename: str) -> tuple[list[Finding], int]:
    """Findings for every document of a YAML or JSON file, and how many objects were ours."""
    findings: list[Finding] = []
    checked = 0
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said there is one
            data = loader.construct_document(node)
            for prefix, obj in _objects(data):
                if obj.get("kind") in (names.WORKFLOW_KIND, names.RUN_KIND):
                    checked += 1
                for path, message, stage in object_problems(obj):
                    findings.append(Finding(filename, locate(node, (*prefix, *path)), stage,
                                            message))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        findings.append(Finding(filename, line, "yaml", f"invalid YAML: {error.problem}"))
    finally:
        loader.dispose()
    return findings, checked


def _objects(data: Any) -> Iterator[tuple[Path_, dict[str, Any]]]:
    """The objects of a document: itself, or the items of a `kind: List`."""
    if not isinstance(data, dict):
        return
    if data.get("kind") == "List" and isinstance(data.get("items"), list):
        for i, item in enumerate(data["items"]):
            if isinstance(item, dict):
                yield ("items", i), item
        return
    yield (), data


def _files(arguments: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """(name, text or None when unreadable); directories yield their manifests, recursively."""
    for argument in arguments:
        if argument == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(argument)
        found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) \
            if path.is_dir() else [path]
        for file in found:
            try:
                yield str(file), file.read_text()
            except OSError as error:
                yield f"{file}: {error.strerror}", None


def run_lint(args: argparse.Namespace, _cluster: object) -> int:
    findings: list[Finding] = []
    checked = files = 0
    for name, text in _files(args.files):
        files += 1
        if text is None:
            findings.append(Finding(name.split(": ")[0], 0, "file", name.split(": ", 1)[1]))
            continue
        found, count = lint_text(text, name)
        findings += found
        checked += count
    if args.output != "table":
        print(dump([asdict(f) for f in findings], args.output))
    else:
        for finding in findings:
            print(finding)
        if findings:
            print(f"{len(findings)} problem(s) in {len({f.file for f in findings})} of "
                  f"{files} file(s)", file=sys.stderr)
        else:
            print(f"{checked} Conveyor object(s) in {files} file(s): no problems",
                  file=sys.stderr)
    return FAILED if findings else OK


def add_parser(verbs: argparse._SubParsersAction[Any], output: argparse.ArgumentParser) -> None:
    parser = verbs.add_parser(
        "lint", parents=[output], help="check Workflow and WorkflowRun manifests offline",
        description="Check manifests as the API server and the operator would, without a "
        "cluster: exit 1 if any problem is found.")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="YAML or JSON manifests, directories of them, or - for stdin")
    parser.set_defaults(handler=run_lint)
