"""`conveyor-operator`: runs Conveyor Workflows on Kubernetes (kopf), see DESIGN.md §1."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import kopf

from conveyor.errors import ConveyorError
from conveyor.kube import Kube
from conveyor.operator.handlers import build_registry
from conveyor.operator.health import standby_server
from conveyor.operator.leader import LeaderElector
from conveyor.operator.settings import load


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `conveyor-operator`."""
    try:
        settings = load(argv)
    except ConveyorError as error:
        print(f"conveyor-operator: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    elector: LeaderElector | None = None
    if settings.leader_lease is not None:
        standby = (standby_server(settings.health_address, settings.health_port)
                   if settings.health_port else None)
        elector = LeaderElector(Kube(), settings.lease_namespace, settings.leader_lease)
        elector.acquire()
        if standby is not None:
            standby.shutdown()
            standby.server_close()
        elector.keep()
    kopf.run(
        registry=build_registry(settings),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=True,  # the Lease, not kopf's peering, keeps replicas from acting at once
        memo=kopf.Memo(settings=settings),
    )
    if elector is not None:
        elector.release()
    return 0
