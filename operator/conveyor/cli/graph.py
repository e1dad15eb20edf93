"""`conveyor graph WORKFLOW`: the DAG as Mermaid or Graphviz DOT, from a file or the cluster.

Edges point the way work flows (dependency -> dependent). forEach tasks and tasks with `when`
say so in their label; finally tasks sit in their own box, after the tasks with no dependents.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from conveyor import names
from conveyor.cli.common import NOT_FOUND, OK, USAGE, CliError, Cluster
from conveyor.cli.runs import fetch


def _label(task: Mapping[str, Any]) -> list[str]:
    lines = [task["name"], f"type: {task.get('type', '?')}"]
    if task.get("forEach"):
        lines.append("forEach")
    if task.get("when"):
        lines.append("when")
    return lines


def _edges(spec: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                              list[tuple[str, str, bool]]]:
    """Tasks, finally tasks, and edges (from, to, whether it is the finally hand-over)."""
    main = list(spec.get("tasks") or [])
    final = list(spec.get("finally") or [])
    edges = [(d, t["name"], False) for t in [*main, *final] for d in t.get("dependsOn") or []]
    if final:
        needed = {d for t in main for d in t.get("dependsOn") or []}
        leaves = [t["name"] for t in main if t["name"] not in needed]
        roots = [t["name"] for t in final if not t.get("dependsOn")]
        edges += [(leaf, root, True) for leaf in leaves for root in roots]
    return main, final, edges


def mermaid(name: str, spec: Mapping[str, Any]) -> str:
    main, final, edges = _edges(spec)
    # Task names may hold `-`, which Mermaid's arrows would swallow: nodes get plain ids.
    ids = {t["name"]: f"t{i}" for i, t in enumerate([*main, *final])}
    lines = ["flowchart TD", f"  %% Workflow {name}"]

    def node(task: Mapping[str, Any]) -> str:
        text = "<br/>".join(_label(task)).replace('"', "#quot;")
        shape = ('[["', '"]]') if task.get("forEach") else ('["', '"]')
        return f"{ids[task['name']]}{shape[0]}{text}{shape[1]}"

    lines += [f"  {node(t)}" for t in main]
    if final:
        lines.append("  subgraph finally")
        lines += [f"    {node(t)}" for t in final]
        lines.append("  end")
    for source, target, handover in edges:
        if source in ids and target in ids:
            arrow = "-.->" if handover else "-->"
            lines.append(f"  {ids[source]} {arrow} {ids[target]}")
    return "\n".join(lines)


def dot(name: str, spec: Mapping[str, Any]) -> str:
    main, final, edges = _edges(spec)

    def node(task: Mapping[str, Any]) -> str:
        shape = ", peripheries=2" if task.get("forEach") else ""
        label = json.dumps("\n".join(_label(task)))
        return f"{json.dumps(task['name'])} [label={label}{shape}];"

    lines = [f"digraph {json.dumps(name)} {{", "  rankdir=TB;",
             '  node [shape=box, style=rounded, fontname="sans-serif"];']
    lines += [f"  {node(t)}" for t in main]
    if final:
        lines.append('  subgraph cluster_finally {\n    label="finally";\n    style=dashed;')
        lines += [f"    {node(t)}" for t in final]
        lines.append("  }")
    for source, target, handover in edges:
        style = " [style=dashed]" if handover else ""
        lines.append(f"  {json.dumps(source)} -> {json.dumps(target)}{style};")
    lines.append("}")
    return "\n".join(lines)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except OSError as error:
        raise CliError(f"{path}: {error.strerror}", NOT_FOUND) from error
    except yaml.YAMLError as error:
        raise CliError(f"{path}: invalid YAML: {str(error).splitlines()[0]}", USAGE) from error
    for document in documents:
        items = document.get("items", []) if isinstance(document, dict) and document.get(
            "kind") == "List" else [document]
        for item in items:
            if isinstance(item, dict) and item.get("kind") == names.WORKFLOW_KIND:
                return item
    raise CliError(f"{path}: no Workflow in it", NOT_FOUND)


def run_graph(args: argparse.Namespace, cluster: Cluster) -> int:
    path = Path(args.workflow)
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        workflow = _from_file(path)
    else:
        workflow = fetch(cluster, names.WORKFLOW_PLURAL, args.workflow)
    name = (workflow.get("metadata") or {}).get("name", path.stem)
    render = mermaid if args.format == "mermaid" else dot
    print(render(name, workflow.get("spec") or {}))
    return OK


def add_parser(verbs: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    parser = verbs.add_parser("graph", parents=[common], help="draw a Workflow's DAG",
                              description="Print the DAG as Mermaid or Graphviz DOT. WORKFLOW "
                              "is a manifest file or the name of a Workflow in the cluster.")
    parser.add_argument("workflow", help="a file (.yaml, .yml, .json) or a Workflow's name")
    parser.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    parser.set_defaults(handler=run_graph)
