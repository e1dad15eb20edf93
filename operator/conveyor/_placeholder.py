"""Console scripts that exist in the contract but whose issue has not landed yet."""

import sys


def not_implemented(command: str, issue: str) -> int:
    """Say honestly that `command` is not implemented yet; exit status 3."""
    print(f"{command}: not implemented yet (arrives with {issue})", file=sys.stderr)
    return 3
