"""Workers of the example order-fulfilment Workflow (examples/): one module, several task types.

Serve one type per Deployment, as the operator does:

    CONVEYOR_TASK_TYPE=payments conveyor-worker --module shop_tasks

Task types and what they do:
    checks        validate an order: its items and total
    inventory     reserve an item (task `reserve`) or release the order's items (task `release`)
    payments      charge the order; fails its first two attempts with Retryable, then succeeds,
                  to show retries (the attempt number decides, so a redelivery of the same
                  attempt behaves the same way)
    notify        tell the customer
    always-fails  fails every attempt, to show a run that fails and its `finally` tasks
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from conveyor.worker import Retryable, TaskContext, task

FLAKY_ATTEMPTS = 2


@task("checks")
def validate(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    order = inputs.get("order") or {}
    items = order.get("items") or []
    if not items:
        raise ValueError(f"order {order.get('id')} has no items")
    for number, item in enumerate(items):
        if not item.get("sku") or int(item.get("quantity", 1)) < 1:
            raise ValueError(f"order {order.get('id')} item {number} needs a sku and a quantity")
    total = round(float(order.get("total", 0)), 2)
    return {"items": items, "total": total, "orderId": order.get("id")}


@task("inventory")
def inventory(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    if inputs.get("action", ctx.task) == "release":
        return {"released": inputs.get("order", {}).get("id"), "by": ctx.worker}
    sku = inputs["sku"]
    # The reservation id derives from the idempotency key: reserving twice for the same
    # attempt (a redelivery) yields the same reservation, not a second one.
    reservation = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:12]
    return {"reserved": sku, "reservation": reservation}


@task("payments")
def charge(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    if ctx.attempt <= FLAKY_ATTEMPTS:
        raise Retryable(f"payment gateway busy (attempt {ctx.attempt})")
    if inputs.get("card") == "declined":
        raise ValueError("card declined")
    receipt = hashlib.sha256(f"{ctx.run_uid}/{ctx.task}".encode()).hexdigest()[:10]
    return {"receiptId": f"r-{receipt}", "amount": inputs.get("amount"), "attempt": ctx.attempt}


@task("notify")
def notify(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    delay = float(inputs.get("delaySeconds", 0))
    end = time.monotonic() + delay
    while time.monotonic() < end:  # a long task: heartbeats tell the operator it is alive
        ctx.heartbeat(progress=f"{(1 - (end - time.monotonic()) / delay):.0%}")
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    return {"notified": inputs.get("customer", "customer"), "channel": "email"}


@task("always-fails")
def always_fails(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    raise Retryable(inputs.get("message", "this task always fails"))
