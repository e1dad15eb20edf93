"""What every verb shares: exit codes, the one error a verb raises, the cluster it talks to,
and run inputs from the command line.

Exit codes (docs/cli.md):
    0  done; for `watch` and `submit --watch`, the run Succeeded
    1  the run ended otherwise (Failed, Cancelled); `lint` found problems; an event no
       queue took
    2  usage: a bad option, `--input` or `--data` that cannot be read
    3  not found: the run, Workflow, file or queue named does not exist
    4  the cluster: no kubeconfig, the API server unreachable or refusing the call
    5  the broker: RabbitMQ unreachable or refusing the call
    6  the object store: not configured for a stored value, unreachable, or refusing the
       call (credentials, a damaged object)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conveyor.errors import ConveyorError
from conveyor.kube import CliKube, KubeError, load_cli_client

OK, FAILED, USAGE, NOT_FOUND, CLUSTER, BROKER, STORE, INTERRUPTED = 0, 1, 2, 3, 4, 5, 6, 130


class CliError(ConveyorError):
    """Ends the command with a one-line message on stderr and `code` as the exit status."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Cluster:
    """The API server and namespace a command works in, connected on first use: `lint` and
    `graph FILE` never need one."""

    kubeconfig: str | None
    context: str | None
    namespace_option: str | None
    _kube: CliKube | None = field(default=None, init=False)
    _namespace: str | None = field(default=None, init=False)

    def _connect(self) -> CliKube:
        if self._kube is None:
            try:
                api, namespace = load_cli_client(self.kubeconfig, self.context)
            except KubeError as error:
                raise CliError(str(error), CLUSTER) from error
            self._kube = CliKube(api)
            self._namespace = self.namespace_option or namespace
        return self._kube

    @property
    def kube(self) -> CliKube:
        return self._connect()

    @property
    def namespace(self) -> str:
        if self.namespace_option:
            return self.namespace_option
        self._connect()
        assert self._namespace is not None
        return self._namespace


def kube_failed(error: KubeError) -> CliError:
    """A failed API call as the CLI reports it: 404 is "not found", the rest the cluster's."""
    return CliError(str(error), NOT_FOUND if error.not_found else CLUSTER)


def parse_input(text: str) -> tuple[str, Any]:
    """`KEY=VALUE`: the value as JSON when it parses (`n=3`, `ok=true`, `o={"id":1}`), else
    the text itself (`name=ada`), so strings need no quoting."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise CliError(f"--input expects KEY=VALUE, got {text!r}", USAGE)
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def read_inputs(pairs: list[str], files: list[str]) -> dict[str, Any]:
    """Inputs from `--inputs-file` files (YAML or JSON maps) in order, then `--input` pairs,
    each overriding what came before."""
    inputs: dict[str, Any] = {}
    for name in files:
        try:
            loaded = yaml.safe_load(Path(name).read_text())
        except OSError as error:
            raise CliError(f"--inputs-file {name}: {error.strerror}", NOT_FOUND) from error
        except yaml.YAMLError as error:
            raise CliError(f"--inputs-file {name}: not YAML or JSON: "
                           f"{str(error).splitlines()[0]}", USAGE) from error
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            raise CliError(f"--inputs-file {name}: expected a map of inputs, got "
                           f"{type(loaded).__name__}", USAGE)
        inputs.update(loaded)
    for pair in pairs:
        key, value = parse_input(pair)
        inputs[key] = value
    return inputs
