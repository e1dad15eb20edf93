"""Conveyor: workflows on Kubernetes, run by autoscaled, queue-fed worker pools.

The public API is assembled here; everything else is private to the package.
"""

from conveyor.errors import ConveyorError

__all__ = ["ConveyorError", "__version__"]

__version__ = "0.1.0"
