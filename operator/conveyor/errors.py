"""The one root of Conveyor's errors.

    ConveyorError
     └── NotImplementedYet   a console script whose issue has not landed
"""


class ConveyorError(Exception):
    """Every error Conveyor raises on purpose derives from this."""


class NotImplementedYet(ConveyorError):
    """A command exists in the contract but is not built yet."""
