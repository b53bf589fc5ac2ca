"""The evaluation package's input error, in a module of its own so that every eval module can import it."""

from aniportrait.errors import UserInputError


class EvalError(UserInputError):
    """A user-facing evaluation error (bad weights file, bad features, bad arguments); one-line message."""
