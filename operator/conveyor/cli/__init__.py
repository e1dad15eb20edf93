"""`conveyor` (also `kubectl conveyor`): run, watch, retry, lint and draw Workflows.

One module per verb (`runs`, `submit`, `watch`, `lint`, `graph`, `publish`, `dlq`, `outputs`,
`schedules`); `common` holds the exit codes and the single error a verb raises, `render` the
output formats, `objectstore` the user's object store. Every failure a user can cause or meet
(a missing run, no cluster, a bad input, the broker or the store down) ends as one line on
stderr and a documented exit code (see `common`), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from conveyor.errors import ConveyorError
from conveyor.extras import MISSING_EXTRA, missing_extra

# Without the cli extra (the Kubernetes client), `conveyor` says which one to install instead
# of a traceback.
_missing: str | None = None
try:
    from conveyor.cli import dlq, graph, lint, outputs, publish, runs, schedules, submit, watch
    from conveyor.cli.common import INTERRUPTED, CliError, Cluster
    from conveyor.cli.render import FORMATS
except ModuleNotFoundError as error:
    _missing = missing_extra(error, "cli", "conveyor")

__all__ = ["main"]


def parser() -> argparse.ArgumentParser:
    # Shared options sit on each verb, so `conveyor get r1 -n shop` works as with kubectl.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="default: the kubeconfig context's")
    common.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    common.add_argument("--context", help="kubeconfig context; default the current one")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=FORMATS, default="table",
                        help="table (default), json or yaml")
    amqp = argparse.ArgumentParser(add_help=False)
    amqp.add_argument("--amqp-url", help="the broker; default $CONVEYOR_AMQP_URL")

    top = argparse.ArgumentParser(
        prog="conveyor", description="Run and inspect Conveyor workflows.",
        epilog="Exit codes: 0 ok (a watched run Succeeded), 1 the run failed or problems "
        "found, 2 usage, 3 not found, 4 cluster unreachable, 5 broker unreachable, "
        "6 object store unreachable or not configured, 130 interrupted.")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    submit.add_parsers(verbs, common, output)
    runs.add_parsers(verbs, common, output)
    outputs.add_parser(verbs, common)
    watch.add_parser(verbs, common)
    schedules.add_parser(verbs, common, output)
    lint.add_parser(verbs, output)
    graph.add_parser(verbs, common)
    publish.add_parser(verbs, amqp)
    dlq.add_parser(verbs, common, output, amqp)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `conveyor` and `kubectl-conveyor`; returns the exit code."""
    if _missing is not None:
        print(_missing, file=sys.stderr)
        return MISSING_EXTRA
    args = parser().parse_args(argv)
    cluster = Cluster(getattr(args, "kubeconfig", None), getattr(args, "context", None),
                      getattr(args, "namespace", None))
    try:
        code: int = args.handler(args, cluster)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except ConveyorError as error:  # an adapter's error a verb did not translate
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `conveyor list | head`
        return 0
    return code
