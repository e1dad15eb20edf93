"""`conveyor-operator`: runs Conveyor Workflows on Kubernetes (kopf), see DESIGN.md §1."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from conveyor.errors import ConveyorError
from conveyor.extras import MISSING_EXTRA, missing_extra

# Without the operator extra (kopf, the Kubernetes client), `conveyor-operator` says which one
# to install instead of a traceback.
_missing: str | None = None
try:
    import kopf

    from conveyor.kube import Kube
    from conveyor.operator.handlers import build_registry
    from conveyor.operator.health import standby_server
    from conveyor.operator.leader import LeaderElector
    from conveyor.operator.settings import load, shared_credentials_warning
except ModuleNotFoundError as error:
    _missing = missing_extra(error, "operator", "conveyor-operator")

log = logging.getLogger("conveyor.operator")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `conveyor-operator`: 0 after a stop, 2 for settings it cannot use, 1
    when it could not start (the broker refused TLS, say, or kopf is not installed)."""
    if _missing is not None:
        print(_missing, file=sys.stderr)
        return MISSING_EXTRA
    try:
        settings = load(argv)
    except ConveyorError as error:
        print(f"conveyor-operator: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if settings.broker.ca_file and not settings.broker.tls:
        log.warning("Ignored the CA file ca_file=%s: the broker URL is amqp://, not amqps://",
                    settings.broker.ca_file)
    shared = shared_credentials_warning(settings)
    if shared is not None:
        log.warning(shared)
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
    try:
        kopf.run(
            registry=build_registry(settings),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,  # the Lease, not kopf's peering, keeps replicas from acting at once
            memo=kopf.Memo(settings=settings),
        )
    except Exception as error:
        # kopf raises its (private) ActivityError when a startup handler failed for good
        # (handlers.configure, on a broker that refuses TLS): one line that says why.
        reason = _reason(error)
        if reason is None:
            raise
        print(f"conveyor-operator: cannot start: {reason}", file=sys.stderr)
        return 1
    finally:
        if elector is not None:
            elector.release()
    return 0


def _reason(error: BaseException) -> ConveyorError | None:
    """Our error in kopf's chain (ActivityError from PermanentError from ours), if any."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConveyorError):
            return cause
        cause = cause.__cause__
    return None
