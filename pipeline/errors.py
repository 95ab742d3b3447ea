"""Exceptions the command line turns into one-line messages.

UsageError: bad input from the user (exit status 2, nothing written).
DataError:  a dataset that is missing, truncated or inconsistent; the message names the file.
"""


class UsageError(ValueError):
    """Bad arguments or input; the CLI prints the message and exits with status 2."""


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or disagrees with its manifest; the message names the file."""
