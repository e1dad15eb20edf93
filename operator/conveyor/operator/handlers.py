"""The kopf handlers: thin. Each one hands the object to the runtime and maps Conveyor's
errors to kopf's (`TemporaryError` with a delay when trying again can help)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from conveyor import names
from conveyor.broker import BrokerError, BrokerSettingsError, TLSError
from conveyor.kube import KubeError
from conveyor.operator.reconcile import Retry
from conveyor.operator.runtime import Runtime
from conveyor.operator.settings import Settings, in_cluster_server

WORKFLOWS = (names.GROUP, names.VERSION, names.WORKFLOW_PLURAL)
RUNS = (names.GROUP, names.VERSION, names.RUN_PLURAL)
DRIFT_SECONDS = 60.0


def raw(value: Any) -> Any:
    """kopf's read-only views as plain JSON values."""
    if isinstance(value, Mapping):
        return {k: raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [raw(v) for v in value]
    return value


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


async def _reconcile(body: Any, memo: Any) -> None:
    try:
        await _runtime(memo).reconciler.reconcile(raw(body))
        await _runtime(memo).triggers.sync_bindings()
    except (BrokerError, KubeError) as error:
        # What waiting may cure is tried again soon (after the server's Retry-After if it
        # gave one); a configuration to fix (a queue's other arguments, refused credentials)
        # once a minute, also the drift timer's pace: it may be fixed outside Conveyor.
        delay = 5.0 if error.retryable else DRIFT_SECONDS
        if isinstance(error, KubeError):
            delay = error.delay(delay)
        raise kopf.TemporaryError(str(error), delay=delay) from error


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.persistence.finalizer = names.FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=names.ANNOTATIONS_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=names.ANNOTATIONS_PREFIX, key="last-handled-configuration")
        settings.posting.enabled = False  # the operator posts its own, meaningful Events
        settings.watching.server_timeout = 300
        try:
            memo.runtime = Runtime(memo.settings)
            await memo.runtime.start()
        except (TLSError, BrokerSettingsError) as error:
            # kopf would retry a startup handler every minute, saying only that it failed:
            # no retry mends a CA, a host name or a URL pika refuses, so the operator exits
            # saying why.
            raise kopf.PermanentError(str(error)) from error

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: its ServiceAccount, at the Service's address (as the Kubernetes client
        # finds it, with no DNS needed); elsewhere (and the test bed's process node):
        # KUBECONFIG.
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        server = in_cluster_server(os.environ)
        if info is not None and server is not None:
            info = dataclasses.replace(info, server=server)
        return info or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: Any, **_: Any) -> None:
        if getattr(memo, "runtime", None) is not None:
            await memo.runtime.stop()

    @kopf.on.event(*WORKFLOWS, registry=registry)
    async def workflow_seen(type: str, body: Any, memo: Any, **_: Any) -> None:
        if type != "DELETED" and body:
            _runtime(memo).workflows.observe(raw(body))

    @kopf.on.resume(*WORKFLOWS, registry=registry)
    @kopf.on.create(*WORKFLOWS, registry=registry)
    @kopf.on.update(*WORKFLOWS, registry=registry)
    async def workflow_changed(body: Any, memo: Any, **_: Any) -> None:
        await _reconcile(body, memo)

    @kopf.timer(*WORKFLOWS, interval=DRIFT_SECONDS, initial_delay=DRIFT_SECONDS,
                registry=registry)
    async def workflow_drift(body: Any, memo: Any, **_: Any) -> None:
        await _reconcile(body, memo)

    @kopf.on.delete(*WORKFLOWS, registry=registry)
    async def workflow_deleted(body: Any, memo: Any, **_: Any) -> None:
        try:
            await _runtime(memo).reconciler.finalize(raw(body))
            await _runtime(memo).triggers.sync_bindings()
        except Retry as waiting:
            raise kopf.TemporaryError(str(waiting), delay=waiting.delay) from waiting
        except (BrokerError, KubeError) as error:
            raise kopf.TemporaryError(str(error), delay=5) from error

    @kopf.on.event(*RUNS, registry=registry)
    async def run_seen(type: str, event: Any, memo: Any, **_: Any) -> None:
        # The watch event's own object, a plain dict: the run loop only reads it, and a
        # copy of every run's body on every event (`raw`) costs more than the rest of it.
        body = event.get("object") if isinstance(event, Mapping) else None
        if not body:
            return
        if type == "DELETED":
            _runtime(memo).runs.deleted(body)
        else:
            _runtime(memo).runs.observe(body)

    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # pika logs every failed reconnection attempt as an error; the broker adapter already
    # says, once per attempt and in a line of its own, that the link is down and retrying.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    # librdkafka too, at every reconnection; the Kafka adapter says so once in a while.
    logging.getLogger("conveyor.kafka.librdkafka").setLevel(logging.CRITICAL)
    return registry
