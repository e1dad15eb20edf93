"""The run loop, one module per job (see `manager` for the map): `RunManager` is its face."""

from conveyor.operator.runs.manager import RunManager

__all__ = ["RunManager"]
