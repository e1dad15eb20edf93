"""The whole soak: set up, submit the runs, carry out the fault plan, wait, judge, clean up.

Whatever happens, `soak` leaves the test bed as it found it: every part killed is started
again and serving, the operator stopped, the namespace and the vhost deleted (the e2e variant
runs before other tests on the same test bed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from conveyor import names
from conveyor.engine.status import decode_runs, parse_time
from soak import ledger, schedule
from soak.cluster import Cluster
from soak.faults import SERVING_TIMEOUT, Daemon, Executor, Happened, Operator, Target, Worker
from soak.supervising import Exit, OperatorSupervisor, operator_env
from soak.verdict import TERMINAL, RunView, Verdict, judge
from testbed import procs
from testbed.layout import REPO

WORKFLOW = "soak"
TASK = "fan"
POLL_SECONDS = 1.0
DRAIN_SECONDS = 30.0
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class Config:
    runs: int = 5
    items: int = 10_000
    plan: str = schedule.DEFAULT_PLAN
    replicas: int = 3
    concurrency: int = 32
    stuck_bound: float = 120.0
    """Seconds after the last fault healed by which every run must be terminal."""
    setup_timeout: float = 120.0
    ledger_sync: bool = True
    task_seconds: float = 0.0
    """How long each task works: 0 measures Conveyor alone; more keeps more tasks in flight
    when a fault lands."""
    out: Path | None = None

    @classmethod
    def ci(cls, out: Path | None = None) -> Config:
        """The e2e variant (tests/e2e/test_soak.py): 3 x 2,000 items on 2 x 8 workers, slow
        enough that both faults of `CI_PLAN` land while the runs are under way."""
        return cls(runs=3, items=2000, plan=schedule.CI_PLAN, replicas=2, concurrency=8,
                   stuck_bound=60.0, out=out)


@dataclass
class Result:
    config: Config
    out: Path
    namespace: str
    happened: list[Happened]
    verdict: Verdict
    seconds: float
    """From submitting the runs to the verdict."""
    busy_seconds: float | None
    """From the first run's start to the last run's end, by their status."""
    healed_at: float | None
    operator_exits: list[Exit]
    container_restarts: int | None
    queues: dict[str, tuple[int, int]] | None
    events_drained: float | None
    """Seconds the operator's events queue took to empty after the runs ended (None: it did
    not within DRAIN_SECONDS). Every event left then is of a finished run, acked on sight,
    so a queue that stays full means the operator stopped consuming."""
    first_status: dict[str, float] = field(default_factory=dict)
    """Run name -> seconds after submission when the soak first saw it started in status."""
    all_terminal: float | None = None
    """Seconds after submission when the soak first saw every run terminal."""
    stuck_detail: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> int:
        return self.config.runs * self.config.items


def soak(config: Config, say: Callable[[str], None] = print) -> Result:
    """Run the soak `config` describes on this checkout's test bed; see the module."""
    return _Soak(config, say).run()


class _Soak:
    def __init__(self, config: Config, say: Callable[[str], None]) -> None:
        self.config, self.say = config, say
        self.plan = schedule.parse(config.plan)
        self.cluster = Cluster()
        bad = self.cluster.unhealthy()
        if bad:
            raise SystemExit(f"the test bed is not healthy ({', '.join(bad)}): "
                             "run `make testbed-up`")
        self.out = config.out or REPO / ".soak" / datetime.now().strftime("%Y%m%d-%H%M%S")
        self.ledger_dir = self.out / "ledger"
        self.ledger_dir.mkdir(parents=True, exist_ok=True)
        self.executor: Executor | None = None
        self.submitted = 0.0
        self.uids: dict[str, str] = {}  # name -> uid of every run submitted
        self.first_status: dict[str, float] = {}
        self.all_terminal: float | None = None  # seconds after submission, as the soak saw
        """Run name -> seconds after submission when its status first showed it started:
        until then a crashed operator dispatches all of it again."""

    def run(self) -> Result:
        cluster, config = self.cluster, self.config
        supervisor: OperatorSupervisor | None = None
        try:
            cluster.prepare()
            self.say(f"Soak namespace={cluster.namespace} vhost={cluster.vhost} "
                     f"output={self.out}")
            supervisor = OperatorSupervisor(
                cluster.namespace, operator_env(cluster.paths.admin_kubeconfig,
                                                cluster.amqp_url, cluster.kubectl_env()),
                self.out)
            supervisor.start()
            self._submit(supervisor)
            assert self.executor is not None
            last = self._watch()
            final = _read_again(cluster, last)
            drained = self._drained()
            found = {r["metadata"]["uid"]: r for r in final}
            # A submitted run the API server no longer lists is judged with no status: stuck,
            # and its items lost unless the ledger has them.
            views = [RunView(name, uid, config.items, (found.get(uid) or {}).get("status") or {})
                     for name, uid in self.uids.items()]
            return Result(
                config=config, out=self.out, namespace=cluster.namespace,
                happened=self.executor.happened,
                verdict=judge(views, ledger.read(self.ledger_dir), TASK),
                seconds=time.monotonic() - self.submitted, busy_seconds=_busy_seconds(views),
                healed_at=self.executor.healed_at(), operator_exits=list(supervisor.exits),
                container_restarts=cluster.container_restarts(),
                queues=cluster.queue_depths(), events_drained=drained,
                first_status=dict(self.first_status), all_terminal=self.all_terminal,
                stuck_detail=[_stuck(v) for v in views
                              if (v.status.get("phase") or "Pending") not in TERMINAL],
            )
        finally:
            try:
                if self.executor is not None:
                    self.executor.abort()
                restarted = cluster.heal()
                if restarted:
                    self.say(f"Restarted what the soak left down: {', '.join(restarted)}")
            finally:  # the operator never outlives the soak, even if a part did not heal
                if supervisor is not None:
                    supervisor.stop()
                cluster.remove()

    def _submit(self, supervisor: OperatorSupervisor) -> None:
        """The Workflow, its pool ready, then the runs all at once and the plan's clock."""
        cluster, config = self.cluster, self.config
        cluster.create(names.WORKFLOW_PLURAL, _workflow(config, self.ledger_dir))
        procs.wait_until(lambda: cluster.workflow_ready(WORKFLOW)
                         and cluster.ready_replicas(f"{WORKFLOW}-soak") >= config.replicas,
                         config.setup_timeout, "the Workflow and its worker pool", interval=0.5)
        self.submitted = time.monotonic()
        for i in range(config.runs):
            made = cluster.create(names.RUN_PLURAL, _run(f"soak-r{i}", config.items))
            self.uids[made["metadata"]["name"]] = made["metadata"]["uid"]
        self.say(f"Submitted {config.runs} runs x {config.items} items; faults: {config.plan}")
        targets: dict[str, Target] = {
            "operator": Operator(supervisor),
            "worker": Worker(cluster.paths, cluster.namespace),
            **{n: Daemon(cluster.paths, cluster.ports, n)
               for n in ("kube-apiserver", "etcd", "rabbitmq")},
        }
        self.executor = Executor(self.plan, targets, start=self.submitted,
                                 progress=lambda: _ledger_lines(self.ledger_dir))
        self.executor.begin()

    def _drained(self) -> float | None:
        began = time.monotonic()
        while time.monotonic() - began < DRAIN_SECONDS:
            queues = self.cluster.queue_depths() or {}
            events = [depth for name, depth in queues.items() if name.endswith(".events")]
            if events and all(depth == (0, 0) for depth in events):
                return time.monotonic() - began
            time.sleep(POLL_SECONDS)  # the poll's interval; the loop ends on the condition
        return None

    def _watch(self) -> list[dict[str, Any]]:
        """Poll the runs until every one is terminal after the plan has healed, or until the
        stuck bound has passed since then; return the runs as last read."""
        assert self.executor is not None
        config = self.config
        plan_end = max((f.until for f in self.plan), default=0.0)
        # A bound on the whole wait even if a part never serves again (its watcher gives up).
        deadline = self.submitted + plan_end + SERVING_TIMEOUT + config.stuck_bound + 60
        last: list[dict[str, Any]] = []
        next_progress = self.submitted + PROGRESS_SECONDS
        while time.monotonic() < deadline:
            runs = self.cluster.runs()
            if runs is not None:
                last = runs
                for r in runs:
                    if (r.get("status") or {}).get("startedAt"):
                        self.first_status.setdefault(r["metadata"]["name"],
                                                     time.monotonic() - self.submitted)
            terminal = len(last) == config.runs and all(
                (r.get("status") or {}).get("phase") in TERMINAL for r in last)
            healed = self.executor.healed_at()
            elapsed = time.monotonic() - self.submitted
            if terminal and self.all_terminal is None:
                self.all_terminal = elapsed
            if healed is not None and (terminal or elapsed > healed + config.stuck_bound):
                break
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_SECONDS
                phases = [str((r.get("status") or {}).get("phase") or "Pending") for r in last]
                self.say(f"  {elapsed:6.0f}s executed={_ledger_lines(self.ledger_dir)} "
                         f"runs={','.join(phases) or '?'}"
                         f"{'' if runs is not None else ' (API server not answering)'}")
            time.sleep(POLL_SECONDS)  # the poll's interval; the loop ends on a condition above
        return last


def _read_again(cluster: Cluster, last: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs read once more after the plan (the API server is back by now), or as last
    read if it does not answer within a minute."""
    try:
        return procs.wait_until(cluster.runs, 60, "the runs after the soak")  # type: ignore[no-any-return]
    except TimeoutError:
        return last


def _ledger_lines(folder: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in folder.glob("*.log"))


def _busy_seconds(views: list[RunView]) -> float | None:
    starts = [v.status.get("startedAt") for v in views]
    ends = [v.status.get("finishedAt") for v in views]
    if not all(starts) or not all(ends) or not views:
        return None
    first = min(parse_time(str(s)) for s in starts)
    return (max(parse_time(str(e)) for e in ends) - first) / 1000


def _stuck(view: RunView) -> str:
    entry: dict[str, Any] = next(
        (t for t in view.status.get("tasks") or [] if t.get("name") == TASK), {})
    items = entry.get("items") or {}
    try:
        states = decode_runs(str(items.get("states") or ""))
    except ValueError:
        states = []
    counts = {code: states.count(code) for code in sorted(set(states))}
    return (f"{view.name}: phase={view.status.get('phase')} task={entry.get('phase')} "
            f"item states={counts} running={items.get('running')} "
            f"active={items.get('active', [])[:5]}")


def _workflow(config: Config, ledger_dir: Path) -> dict[str, Any]:
    env = [{"name": "PYTHONPATH", "value": str(REPO / "hack")},
           {"name": ledger.ENV_DIR, "value": str(ledger_dir)},
           {"name": ledger.ENV_SYNC, "value": "1" if config.ledger_sync else "0"}]
    return {
        "apiVersion": names.API_VERSION, "kind": names.WORKFLOW_KIND,
        "metadata": {"name": WORKFLOW},
        "spec": {
            "taskTypes": [{
                "name": "soak", "image": "conveyor-soak:dev",
                "command": ["conveyor-worker", "--module", "soak.tasks"], "env": env,
                "concurrency": config.concurrency,
                "scaling": {"minReplicas": config.replicas, "maxReplicas": config.replicas},
            }],
            "tasks": [{"name": TASK, "type": "soak", "forEach": "${{ inputs.items }}",
                       "inputs": {"seconds": config.task_seconds}}],
        },
    }


def _run(name: str, items: int) -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.RUN_KIND,
            "metadata": {"name": name},
            "spec": {"workflowRef": {"name": WORKFLOW},
                     "inputs": {"items": list(range(items))}}}
