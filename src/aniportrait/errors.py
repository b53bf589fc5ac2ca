"""The error base of the whole package: input a user can fix.

Every module's error class for bad input (a missing or corrupt file, a value out of range, an unknown option)
derives from :class:`UserInputError`, itself a ``ValueError``. Its message is one line that says what is wrong
and what to do; the command line prints it and exits with code 2. This module imports nothing of ours, so any
module may import it.
"""


class UserInputError(ValueError):
    """Bad input: a file, an option or a value that the user must fix; the message says what and how."""
