"""The optional parts of the distribution (pyproject's extras) and the one line a command
prints when its extra is not installed: `pip install conveyor` is the worker SDK only; the
operator and the CLI need `conveyor[operator]` and `conveyor[cli]`."""

from __future__ import annotations

# The modules each extra installs that the code imports (the distributions' import names).
MODULES = {
    "operator": ("kopf", "kubernetes", "aiohttp"),
    "cli": ("kubernetes",),
    "kafka": ("confluent_kafka",),
}

# A command run without its extra exits with this, as one that could not start.
MISSING_EXTRA = 1


def missing_extra(error: ModuleNotFoundError, extra: str, command: str) -> str:
    """The line that tells the user of `command` to install `extra`, when `error` is about one
    of its modules; any other missing module is a bug, re-raised as it is."""
    top = (error.name or "").partition(".")[0]
    if top not in MODULES[extra]:
        raise error
    return (f"{command}: needs the {extra!r} extra ({top} is not installed): "
            f"pip install 'conveyor[{extra}]'")


