"""`submit WORKFLOW` starts a run with inputs; `retry RUN` starts a new run of the same
Workflow and inputs that reuses the outputs of the tasks that succeeded (spec.reuse)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from conveyor import names
from conveyor.cli.common import FAILED, OK, CliError, Cluster, kube_failed, read_inputs
from conveyor.cli.render import dump
from conveyor.cli.runs import fetch
from conveyor.cli.watch import TERMINAL_RUN, follow
from conveyor.kube import KubeError
from conveyor.manifests import run_manifest
from conveyor.stored import REF, is_items_ref

# Where a retried run came from: for people and tools; the operator does not read it.
RETRY_OF_ANNOTATION = f"{names.GROUP}/retry-of"


def reusable(status: Mapping[str, Any], workflow_spec: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs of the tasks an earlier run got done, by task name: plain tasks and whole
    forEach tasks of spec.tasks that Succeeded (run or reused). Finally tasks are left out:
    they answer this run's outcome. A forEach task's outputs count only when there is one per
    item, which a Succeeded task always has."""
    main = {t["name"]: t for t in workflow_spec.get("tasks") or []}
    reuse: dict[str, Any] = {}
    for task in status.get("tasks") or []:
        spec = main.get(task.get("name", ""))
        if spec is None or task.get("phase") != "Succeeded":
            continue
        outputs = task.get("outputs")
        if spec.get("forEach") is None:
            reuse[task["name"]] = {} if outputs is None else outputs
        elif isinstance(outputs, list) and len(outputs) == (task.get("items") or {}).get(
                "total", len(outputs)):
            reuse[task["name"]] = outputs
        elif is_items_ref(outputs) and outputs[REF].get("items") == (
                task.get("items") or {}).get("total"):
            reuse[task["name"]] = outputs  # stored: referenced by the new run, never copied
    return reuse


def _create(cluster: Cluster, body: dict[str, Any]) -> str:
    try:
        created = cluster.kube.create_object(names.RUN_PLURAL, cluster.namespace, body)
    except KubeError as error:
        raise kube_failed(error) from error
    return str(created["metadata"]["name"])


def run_submit(args: argparse.Namespace, cluster: Cluster) -> int:
    inputs = read_inputs(args.input or [], args.inputs_file or [])
    fetch(cluster, names.WORKFLOW_PLURAL, args.workflow)  # a clear "not found" beats a run
    # that waits forever for its Workflow
    name = _create(cluster, run_manifest(args.workflow, inputs, name=args.name,
                                         generate_name=args.generate_name))
    print(f"workflowrun/{name} created")
    return follow(cluster, name, sys.stdout) if args.watch else OK


def run_retry(args: argparse.Namespace, cluster: Cluster) -> int:
    earlier = fetch(cluster, names.RUN_PLURAL, args.run)
    status, spec = earlier.get("status") or {}, earlier.get("spec") or {}
    phase = status.get("phase", "Pending")
    if phase not in TERMINAL_RUN:
        raise CliError(f"workflowrun {args.run!r} is {phase}: retry a run once it has ended "
                       f"(`conveyor cancel {args.run}` first)", FAILED)
    workflow_name = spec.get("workflowRef", {}).get("name", "")
    workflow = fetch(cluster, names.WORKFLOW_PLURAL, workflow_name)
    reuse = reusable(status, workflow.get("spec") or {})
    body = run_manifest(workflow_name, spec.get("inputs") or {}, name=args.name,
                        generate_name=args.generate_name or f"{args.run}-retry-",
                        reuse=reuse, annotations={RETRY_OF_ANNOTATION: args.run})
    name = _create(cluster, body)
    print(f"workflowrun/{name} created, reusing {len(reuse)} task(s): "
          f"{', '.join(reuse) or 'none'}")
    if args.output != "table":
        print(dump(body["spec"], args.output))
    return follow(cluster, name, sys.stdout) if args.watch else OK


def _naming(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--name", help="the new run's name")
    group.add_argument("--generate-name", help="prefix the API server completes (default "
                       "the Workflow's name and a dash)")
    parser.add_argument("--watch", action="store_true",
                        help="then watch the run; the exit code is the run's outcome")


def add_parsers(verbs: argparse._SubParsersAction[Any], common: argparse.ArgumentParser,
                output: argparse.ArgumentParser) -> None:
    submit = verbs.add_parser("submit", parents=[common], help="start a run of a Workflow")
    submit.add_argument("workflow", help="the Workflow")
    submit.add_argument("--input", "-i", action="append", metavar="KEY=VALUE",
                        help="an input; VALUE is JSON if it parses, else a string (repeatable)")
    submit.add_argument("--inputs-file", "-f", action="append", metavar="FILE",
                        help="inputs from a YAML or JSON map (repeatable; --input wins)")
    _naming(submit)
    submit.set_defaults(handler=run_submit)

    retry = verbs.add_parser("retry", parents=[common, output],
                             help="rerun an ended run, reusing what succeeded")
    retry.add_argument("run", help="the WorkflowRun to retry")
    _naming(retry)
    retry.set_defaults(handler=run_retry)
