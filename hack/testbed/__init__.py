"""The Conveyor test bed: a real Kubernetes control plane and RabbitMQ as local processes.

    python -m testbed up | down | env | status     (run with PYTHONPATH=hack)
    python -m testbed kill PART | restart PART     (fault tests: SIGKILL one part, start it again)

Every part listens on loopback only, on ports chosen at the first `up` and kept in the
state directory (`$CONVEYOR_TESTBED_DIR`, default `<repo>/.testbed`), so two checkouts on one
machine each have their own test bed.
"""
