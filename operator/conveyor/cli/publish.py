"""`conveyor publish EVENT --data JSON`: an event on conveyor.events, as an external system
would send it, e.g. to start runs through a Workflow's triggers."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from conveyor import names
from conveyor.broker import BrokerError, UnroutableError, oneshot
from conveyor.cli.common import BROKER, FAILED, OK, USAGE, CliError
from conveyor.cli.dlq import broker_settings


def run_publish(args: argparse.Namespace, _cluster: object) -> int:
    try:
        body = json.loads(args.data)
    except ValueError as error:
        raise CliError(f"--data is not JSON: {error}", USAGE) from error
    # The id names the runs the event starts: publishing again with the same --id starts none.
    message_id = args.id or uuid.uuid4().hex
    settings = broker_settings(args)
    try:
        oneshot.publish_confirmed(settings, names.EVENTS_EXCHANGE, args.event,
                                 json.dumps(body).encode(), message_id=message_id)
    except UnroutableError as error:
        raise CliError(f"event {args.event!r} was not delivered: no queue is bound for it "
                       "(no Workflow trigger matches it, or the operator is not running)",
                       FAILED) from error
    except BrokerError as error:
        raise CliError(str(error), BROKER) from error
    print(f"published {args.event} id={message_id}")
    return OK


def add_parser(verbs: argparse._SubParsersAction[Any], amqp: argparse.ArgumentParser) -> None:
    parser = verbs.add_parser("publish", parents=[amqp], help="publish an event to "
                              f"{names.EVENTS_EXCHANGE}")
    parser.add_argument("event", help="the routing key, e.g. order.created")
    parser.add_argument("--data", "-d", default="{}", help="the event body, JSON")
    parser.add_argument("--id", help="the message id (default a random one); runs started by "
                        "the event are named from it")
    parser.set_defaults(handler=run_publish)
