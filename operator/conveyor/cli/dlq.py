"""`conveyor dlq list|replay TASKTYPE`: a task type's dead letters, read without taking them,
and moved back to its queue.

`list` reads each message and puts it back (nothing is consumed); `replay` republishes each to
the task type's queue with a publisher confirm and only then removes it from the dead-letter
queue, so a failure midway duplicates at most one message and loses none.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from conveyor import names
from conveyor.broker import BrokerError, oneshot
from conveyor.broker.codec import DETAIL_HEADER, REASON_HEADER
from conveyor.broker.settings import URL_ENV, BrokerSettings, BrokerSettingsError
from conveyor.cli.common import BROKER, NOT_FOUND, OK, USAGE, CliError, Cluster, kube_failed
from conveyor.cli.render import dump, plain, table
from conveyor.kube import KubeError


def broker_settings(args: argparse.Namespace) -> BrokerSettings:
    env = dict(os.environ)
    if getattr(args, "amqp_url", None):
        env[URL_ENV] = args.amqp_url
    try:
        return BrokerSettings.from_env(env, name="conveyor-cli")
    except BrokerSettingsError as error:
        raise CliError(f"{error} (or pass --amqp-url)", USAGE) from error


def _workflow_of(args: argparse.Namespace, cluster: Cluster) -> str:
    """--workflow, or the one Workflow of the namespace that has this task type."""
    if args.workflow:
        return str(args.workflow)
    try:
        workflows = cluster.kube.list_objects(names.WORKFLOW_PLURAL, cluster.namespace)
    except KubeError as error:
        raise kube_failed(error) from error
    having = [w["metadata"]["name"] for w in workflows
              if any(t.get("name") == args.task_type
                     for t in (w.get("spec") or {}).get("taskTypes") or [])]
    if len(having) != 1:
        which = ", ".join(having) if having else "none"
        raise CliError(f"task type {args.task_type!r}: Workflows in namespace "
                       f"{cluster.namespace} that have it: {which}; name one with --workflow",
                       NOT_FOUND if not having else USAGE)
    return str(having[0])


def describe(message: oneshot.PeekedMessage) -> dict[str, Any]:
    """What a person wants of a dead letter: why it died, how often, and what task it was."""
    headers = plain(message.headers)
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths else {}
    try:
        body: Any = json.loads(message.body)
    except ValueError:
        body = plain(message.body)
    return {
        "messageId": message.message_id,
        "reason": headers.get(REASON_HEADER) or first.get("reason") or "",
        "detail": headers.get(DETAIL_HEADER) or "",
        "deaths": sum(int(d.get("count", 1)) for d in deaths),
        "attemptId": body.get("attemptId") if isinstance(body, dict) else None,
        "headers": headers,
        "body": body,
    }


def _call(what: str, operation: Any) -> Any:
    try:
        return operation()
    except BrokerError as error:
        raise CliError(f"{what}: {error}", BROKER) from error


def run_list(args: argparse.Namespace, cluster: Cluster) -> int:
    queue = names.queue_name(cluster.namespace, _workflow_of(args, cluster), args.task_type)
    dead = names.dead_letter_queue(queue)
    settings = broker_settings(args)
    found = _call(f"read {dead}", lambda: oneshot.peek_queue(settings, dead, args.limit))
    if found is None:
        raise CliError(f"no dead-letter queue {dead} (is the Workflow provisioned?)",
                       NOT_FOUND)
    messages = [describe(m) for m in found]
    if args.output != "table":
        print(dump(messages, args.output))
        return OK
    if not messages:
        print(f"{dead}: no dead letters")
        return OK
    print(table(["MESSAGE-ID", "REASON", "DEATHS", "ATTEMPT", "DETAIL"],
                [[m["messageId"], m["reason"], m["deaths"], m["attemptId"] or "",
                  str(m["detail"])[:60]] for m in messages]))
    return OK


def run_replay(args: argparse.Namespace, cluster: Cluster) -> int:
    queue = names.queue_name(cluster.namespace, _workflow_of(args, cluster), args.task_type)
    dead = names.dead_letter_queue(queue)
    settings = broker_settings(args)
    moved = _call(f"replay {dead}", lambda: oneshot.move_messages(
        settings, dead, names.TASKS_EXCHANGE, queue, args.limit))
    if moved is None:
        raise CliError(f"no dead-letter queue {dead} (is the Workflow provisioned?)",
                       NOT_FOUND)
    print(f"replayed {moved} message(s) from {dead} to {queue}")
    return OK


def add_parser(verbs: argparse._SubParsersAction[Any], common: argparse.ArgumentParser,
               output: argparse.ArgumentParser, amqp: argparse.ArgumentParser) -> None:
    dlq = verbs.add_parser("dlq", help="inspect and replay a task type's dead letters")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="{list,replay}")
    for action, handler, parents, text in (
        ("list", run_list, [common, output, amqp], "show dead letters without consuming them"),
        ("replay", run_replay, [common, amqp], "move dead letters back to the task queue"),
    ):
        parser = actions.add_parser(action, parents=parents, help=text)
        parser.add_argument("task_type", metavar="TASKTYPE", help="the task type")
        parser.add_argument("--workflow", "-w", help="the Workflow (default the one Workflow "
                            "of the namespace with this task type)")
        parser.add_argument("--limit", type=int, default=100 if action == "list" else None,
                            help="at most this many messages")
        parser.set_defaults(handler=handler)
