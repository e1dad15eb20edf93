"""`conveyor`: the CLI issue."""

from conveyor._placeholder import not_implemented


def main() -> int:
    """Entry point of `conveyor`."""
    return not_implemented("conveyor", "the CLI issue")
