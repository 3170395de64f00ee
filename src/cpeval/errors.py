"""The one error type a user can cause.

Every message names the file, the variable or row, the value and what was expected, so that the CLI can
print it on one line and exit with code 2, without a traceback.
"""


class CpevalError(Exception):
    """A problem with the user's input (file, data, definition, plan), not a bug in cpeval."""
