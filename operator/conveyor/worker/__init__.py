"""`conveyor-worker`: the worker SDK issue."""

from conveyor._placeholder import not_implemented


def main() -> int:
    """Entry point of `conveyor-worker`."""
    return not_implemented("conveyor-worker", "the worker SDK issue")
