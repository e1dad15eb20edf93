"""The fault soak's CI-sized variant (`make soak` runs the full one): 3 runs x 2,000 items
while RabbitMQ and, overlapping it, the operator are killed with SIGKILL and started again.
Nothing may be lost, stuck or applied twice, and the test bed must be whole afterwards, as
the tests after this one use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from soak import report
from soak.cluster import Cluster
from soak.soaking import Config, soak
from support.kube import local_testbed_only

pytestmark = [pytest.mark.e2e, local_testbed_only]


def test_a_soak_through_a_broker_and_an_operator_crash_loses_nothing(cluster, tmp_path: Path):
    config = Config.ci(out=tmp_path)
    result = soak(config, say=print)
    print(report.render(result))
    verdict = result.verdict

    assert Cluster().unhealthy() == [], "the soak must leave every part of the test bed up"
    for h in result.happened:
        assert h.error is None, f"{h.fault}: {h.error}"
        assert h.serving_at is not None, f"{h.fault} never served again"
        # A fault that lands once every item ran tests nothing.
        assert h.done_at_kill is not None and h.done_at_kill < result.tasks, (
            f"{h.fault} came after the runs had executed every item")
    assert len(verdict.runs) == config.runs
    assert (verdict.lost, verdict.stuck, verdict.double_applied, verdict.not_succeeded) == (
        0, 0, 0, 0), report.render(result)
    assert all(r.executions >= config.items for r in verdict.runs)
