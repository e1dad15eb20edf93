"""The autoscaling policy: pure decisions from work, bounds and time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conveyor.models import Scaling
from conveyor.scaling import PoolState, decide, desired_replicas, pod_deletion_costs

POOL = Scaling(min_replicas=0, max_replicas=5, backlog_per_replica=10,
               idle_seconds_before_scale_down=60)


def test_desired_replicas_is_the_ceiling_of_work_over_backlog_per_replica():
    assert desired_replicas(POOL, backlog=0, in_flight=0) == 0
    assert desired_replicas(POOL, backlog=1, in_flight=0) == 1
    assert desired_replicas(POOL, backlog=10, in_flight=0) == 1
    assert desired_replicas(POOL, backlog=10, in_flight=1) == 2
    assert desired_replicas(POOL, backlog=1000, in_flight=0) == 5


def test_min_replicas_holds_without_work():
    pool = POOL.model_copy(update={"min_replicas": 2})
    assert desired_replicas(pool, 0, 0) == 2


def test_one_task_scales_a_pool_up_from_zero_at_once():
    decision = decide(POOL, PoolState(0), backlog=1, in_flight=0, now=0.0)
    assert decision.replicas == 1 and decision.changed


def test_scale_down_waits_for_the_idle_period_without_a_break():
    state = PoolState(3)
    first = decide(POOL, state, 0, 0, now=100.0)
    assert first.replicas == 3 and first.state.below_since == 100.0
    almost = decide(POOL, first.state, 0, 0, now=159.0)
    assert almost.replicas == 3
    # Work arriving in between resets the clock.
    busy = decide(POOL, almost.state, 0, 30, now=159.5)
    assert busy.replicas == 3 and busy.state.below_since is None
    later = decide(POOL, busy.state, 0, 0, now=170.0)
    assert later.replicas == 3
    done = decide(POOL, later.state, 0, 0, now=230.0)
    assert done.replicas == 0 and done.changed


def test_busy_pods_cost_more_to_delete_than_idle_ones():
    costs = pod_deletion_costs(["a", "b", "c"], {"a": 2, "c": 10_000})
    assert costs["b"] == 0 < costs["a"] < costs["c"]
    assert costs["c"] <= 1_000_000


@given(st.integers(0, 5), st.integers(0, 500), st.integers(0, 500),
       st.floats(0, 1e6, allow_nan=False))
def test_decisions_stay_within_bounds_and_never_scale_below_the_work(
    replicas: int, backlog: int, in_flight: int, now: float
):
    decision = decide(POOL, PoolState(replicas), backlog, in_flight, now)
    assert POOL.min_replicas <= decision.replicas <= max(POOL.max_replicas, replicas)
    assert decision.replicas >= desired_replicas(POOL, backlog, in_flight)
