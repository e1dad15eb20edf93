"""The Kubernetes adapter: the only package that imports `kubernetes`.

    errors   KubeError and the mapping of every client, urllib3 and socket error onto it
    client   Kube: the operator's blocking calls (and the leader election's)
    facade   AsyncKube: the same calls as coroutines, in a worker thread each
    cli      CliKube and load_cli_client: the `conveyor` CLI's calls
"""

from conveyor.kube.cli import CliKube, load_cli_client
from conveyor.kube.client import DeploymentState, Kube, load_api_client
from conveyor.kube.errors import KubeError
from conveyor.kube.facade import AsyncKube

__all__ = ["AsyncKube", "CliKube", "DeploymentState", "Kube", "KubeError", "load_api_client",
           "load_cli_client"]
