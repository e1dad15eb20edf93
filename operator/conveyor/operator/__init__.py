"""`conveyor-operator`: the operator issue."""

from conveyor._placeholder import not_implemented


def main() -> int:
    """Entry point of `conveyor-operator`."""
    return not_implemented("conveyor-operator", "the operator issue")
