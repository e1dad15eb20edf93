"""`conveyor lint FILE...`: what the API server and the operator would say about manifests,
said offline, each problem at its file and line.

Three stages, in the order a manifest meets them, each stopping the next as the real one does
(`conveyor.cli.admission` holds the first two):

    admission  the CRD's structural schema (checked with the pydantic models the CRDs are
               generated from, strictly: the API server does not coerce "5" to 5) and the
               CRD's own CEL `x-kubernetes-validations`, evaluated here with the same CEL
               library the operator uses; messages in the API server's words
    operator   `compile_workflow`: cycles, `${{ }}` syntax, references inside expressions;
               messages as the Workflow's `Ready=False, reason=InvalidSpec` condition says them

A problem's place (`spec.tasks[2].dependsOn`) is mapped to a line through the YAML node tree
(`yaml.compose`), so an editor can jump to it. Files are read as kubectl reads them
(`conveyor.cli.documents`): what is no YAML kubectl would send is one finding, never a crash.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from conveyor import names
from conveyor.cli.admission import Path_, Segment, object_problems
from conveyor.cli.common import FAILED, OK
from conveyor.cli.documents import DocumentError, documents
from conveyor.cli.render import dump

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Finding:
    """One problem `conveyor lint` found, with its file, line and the stage that found it."""

    file: str
    line: int
    stage: str  # yaml | admission | operator
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.stage}] {self.message}"


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


def lint_text(text: str, filename: str) -> tuple[list[Finding], int]:
    """Findings for every document of a YAML or JSON file, and how many objects were ours."""
    findings: list[Finding] = []
    checked = 0
    try:
        for node, data in documents(text):
            for prefix, obj in _objects(data):
                if obj.get("kind") in (names.WORKFLOW_KIND, names.RUN_KIND):
                    checked += 1
                for path, message, stage in object_problems(obj):
                    findings.append(Finding(filename, locate(node, (*prefix, *path)), stage,
                                            message))
    except DocumentError as error:
        findings.append(Finding(filename, error.line, "yaml", error.message))
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
            except UnicodeDecodeError as error:
                yield f"{file}: not UTF-8 text (byte {error.start})", None


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
