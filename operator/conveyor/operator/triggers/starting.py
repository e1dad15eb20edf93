"""What every trigger source shares: the run's deterministic name, and its creation, where a
409 is the proof that an earlier delivery of the same event (or record), or an earlier
evaluation of the same due time, made it already."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any

from conveyor import names
from conveyor.children import child_name
from conveyor.kube import KubeError
from conveyor.manifests import run_manifest
from conveyor.operator.seams import KubeApi

log = logging.getLogger("conveyor.operator.triggers")

_UNSAFE = re.compile(r"[^a-z0-9-]+")


class Unusable(Exception):  # noqa: N818 - not an error of the operator: a reason to drop
    """An event or record that can start no run; `reason` is the metric's label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def run_name(workflow: str, ident: str, trigger: int) -> str:
    """A DNS-safe run name that depends only on the event (or record) and the trigger that
    matched it."""
    readable = _UNSAFE.sub("-", ident.lower()).strip("-")[:20].strip("-")
    digest = hashlib.sha256(f"{workflow}\0{ident}\0{trigger}".encode()).hexdigest()[:10]
    return child_name(workflow, *(p for p in (readable, digest) if p))


async def start_run(kube: KubeApi, namespace: str, workflow: str, ident: str, *, index: int,
                    inputs: Any, annotations: Mapping[str, str], described: str) -> bool:
    """Create the run of (`ident`, trigger `index`); False when it exists already. Raises
    the API server's other refusals as KubeError. `described` ends the log lines
    (`event=... routingKey=...`)."""
    name = run_name(workflow, ident, index)
    body = run_manifest(
        workflow, inputs if isinstance(inputs, dict) else {"value": inputs}, name=name,
        labels={names.LABEL_WORKFLOW: workflow},
        annotations={f"{names.GROUP}/event-id": ident[:253], **annotations})
    if not await create_run(kube, namespace, body):
        log.info("Run exists for event run=%s/%s %s", namespace, name, described)
        return False
    log.info("Run created by trigger run=%s/%s %s", namespace, name, described)
    return True


async def create_run(kube: KubeApi, namespace: str, body: Mapping[str, Any]) -> bool:
    """Create a run under its deterministic name; False when it exists already (the 409 is
    the proof that an earlier attempt made it). Raises the other refusals as KubeError."""
    try:
        await kube.create_run(namespace, body)
    except KubeError as error:
        if error.conflict:
            return False
        raise
    return True
