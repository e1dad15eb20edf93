"""The fault plan: which part is killed when, and for how long it stays down (pure).

A plan is written `target@start+down,...`, seconds after the runs were submitted:
`kube-apiserver@15+10` kills the API server 15 s in and starts it again 10 s later. A worker
takes no `+down`: the node agent restarts a killed container on its own (restartPolicy
Always, after its back-off), as a kubelet would, so the soak cannot hold it down. Faults of
different parts may overlap; two of one part may not (a dead part cannot be killed again).
"""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("operator", "kube-apiserver", "etcd", "worker", "rabbitmq")

DEFAULT_PLAN = ",".join([
    "operator@3+2",          # alone: no standby, so the next one waits out the Lease (15 s)
    "kube-apiserver@30+8",   # the control plane down...
    "etcd@32+4",             # ...and its store down and back inside that outage
    "worker@45",             # one worker's in-flight tasks go back to the queue
    "rabbitmq@50+6",         # the broker, with every queue's unacked messages...
    "worker@53",             # ...a worker as the broker comes back...
    "operator@54+3",         # ...and the operator while the broker is away
    "etcd@80+5",             # the store alone, the API server up and failing its calls...
    "kube-apiserver@82+5",   # ...then the API server too, back after the store is
])
"""Each part in turn, then overlapping, spread over the runs (about 1,000 tasks/s on the
test bed when nothing fails; each operator kill costs the Lease's 15 s on top of the outage)."""

CI_PLAN = "rabbitmq@2+5,operator@4+4"
"""Two overlapping faults for the e2e variant: the broker, and the operator while it is away."""


class PlanError(ValueError):
    """A fault plan that cannot be carried out."""


@dataclass(frozen=True)
class Fault:
    target: str
    at: float
    """Seconds after the runs were submitted."""
    down: float = 0.0
    """Seconds between the kill and the restart (0 for a worker: the node agent decides)."""

    @property
    def until(self) -> float:
        return self.at + self.down

    def __str__(self) -> str:
        return f"{self.target}@{self.at:g}" + (f"+{self.down:g}" if self.down else "")


def parse(text: str) -> list[Fault]:
    """The faults of a plan, by start time; PlanError says what is wrong with one."""
    faults = [_fault(part.strip()) for part in text.split(",") if part.strip()]
    faults.sort(key=lambda f: f.at)
    last: dict[str, Fault] = {}
    for fault in faults:
        before = last.get(fault.target)
        if before is not None and fault.at < before.until:
            raise PlanError(f"{fault} starts before {before} has ended: one part is killed "
                            "once at a time")
        last[fault.target] = fault
    return faults


def _fault(text: str) -> Fault:
    target, at_sign, timing = text.partition("@")
    if not at_sign or target not in TARGETS:
        raise PlanError(f"{text!r}: want TARGET@START[+DOWN] with TARGET one of "
                        f"{', '.join(TARGETS)}")
    start, plus, down = timing.partition("+")
    try:
        fault = Fault(target, float(start), float(down) if plus else 0.0)
    except ValueError:
        raise PlanError(f"{text!r}: START and DOWN are seconds") from None
    if fault.at < 0 or fault.down < 0:
        raise PlanError(f"{text!r}: times must not be negative")
    if target == "worker" and fault.down:
        raise PlanError(f"{text!r}: a worker is restarted by the node agent, not held down")
    if target != "worker" and not fault.down:
        raise PlanError(f"{text!r}: say how long {target} stays down (+DOWN)")
    return fault


def overlapping(faults: list[Fault]) -> list[tuple[Fault, Fault]]:
    """Pairs of faults whose outages overlap (a worker's counts as an instant)."""
    pairs = []
    for i, a in enumerate(faults):
        for b in faults[i + 1:]:
            if b.at <= a.until and a.at <= b.until:
                pairs.append((a, b))
    return pairs
