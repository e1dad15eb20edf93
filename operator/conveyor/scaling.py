"""Pure autoscaling policy of a worker pool: (work waiting, spec, memory of idleness, now)
-> replicas. The operator gathers the figures; this module only decides.

Rules (DESIGN.md §1, issue 5):
- desired = ceil((backlog + in flight) / backlogPerReplica), within [minReplicas, maxReplicas];
- a pool with work and zero replicas gets one at once (dispatch triggers the decision);
- scaling up happens at once; scaling down waits until demand has stayed below the current
  size for `idleSecondsBeforeScaleDown`, so a short lull never drops a warm pod;
- busy pods are the last a scale-down removes (pod-deletion-cost).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from conveyor.models import Scaling

# Pod-deletion-cost of a pod per task it holds; idle pods cost 0 so the ReplicaSet removes
# them first. Kubernetes takes any int32; stay well inside it.
BUSY_POD_COST_PER_TASK = 1000
MAX_POD_COST = 1_000_000


@dataclass(frozen=True)
class PoolState:
    """What the autoscaler remembers of one pool between decisions."""

    replicas: int
    """Replicas the Deployment was last set to."""
    below_since: float | None = None
    """Since when demand has been below `replicas` without a break (monotonic seconds)."""


@dataclass(frozen=True)
class Decision:
    """What `decide` chose for a pool: the replicas, the new state, and why."""

    replicas: int
    state: PoolState
    reason: str
    changed: bool


def desired_replicas(scaling: Scaling, backlog: int, in_flight: int) -> int:
    """The replicas that absorb the work, within the pool's bounds."""
    work = max(backlog, 0) + max(in_flight, 0)
    wanted = math.ceil(work / scaling.backlog_per_replica)
    return max(scaling.min_replicas, min(scaling.max_replicas, wanted))


def decide(scaling: Scaling, state: PoolState, backlog: int, in_flight: int,
           now: float) -> Decision:
    """The pool's next size and the state to remember for the next decision."""
    wanted = desired_replicas(scaling, backlog, in_flight)
    current = state.replicas
    if wanted > current:
        return Decision(wanted, PoolState(wanted), f"scaled up for {backlog + in_flight} tasks",
                        changed=True)
    if wanted == current:
        return Decision(current, PoolState(current), "steady", changed=False)
    since = state.below_since if state.below_since is not None else now
    if now - since >= scaling.idle_seconds_before_scale_down:
        return Decision(wanted, PoolState(wanted),
                        f"scaled down after {scaling.idle_seconds_before_scale_down}s "
                        f"below {current} replicas", changed=True)
    return Decision(current, PoolState(current, since), "waiting out the idle period",
                    changed=False)


def pod_deletion_costs(pods: Iterable[str], tasks_by_pod: Mapping[str, int]) -> dict[str, int]:
    """`controller.kubernetes.io/pod-deletion-cost` per pod: busy pods cost more to remove."""
    return {
        pod: min(MAX_POD_COST, BUSY_POD_COST_PER_TASK * max(tasks_by_pod.get(pod, 0), 0))
        for pod in pods
    }
