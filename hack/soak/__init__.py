"""A fault soak of Conveyor on the test bed (`make soak`, DESIGN.md §7).

R WorkflowRuns of N forEach items each run on a pool of workers that record every execution
in a ledger, while the operator, the API server, etcd, one worker and RabbitMQ are killed
with SIGKILL in turn and overlapping, and started again. Then the ledger and the runs' status
are compared: items lost (never executed), runs stuck (not terminal within a bound after the
last fault healed), items double-applied (counted twice in a status), and items re-executed
(allowed: delivery is at least once).

    PYTHONPATH=hack python -m soak [--runs 5 --items 10000 --faults SPEC]

Modules: `schedule` (the fault plan, pure), `ledger` (what workers executed), `tasks` (the
workers' task), `verdict` (ledger against status, pure), `cluster` (the API server and the
broker, tolerant of their outages), `operator` (the operator kept running like a Deployment
would), `faults` (the plan carried out), `soaking` (the whole soak), `report` (the table).
"""
