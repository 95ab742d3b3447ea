"""Error kinds the command line turns into one-line messages, and the check every count shares.

UsageError: bad input from the user (exit status 2, nothing written).
DataError:  a dataset that is missing, truncated or inconsistent; the message names the file.
"""
import argparse


class UsageError(ValueError):
    """Bad arguments or input; the CLI prints the message and exits with status 2."""


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or disagrees with its manifest; the message names the file."""


def require_positive_int(name: str, value, *, optional: bool = False) -> int | None:
    """`value` if it is an int >= 1 (a bool is not), or None when `optional`; else ValueError naming `name`."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")
    return value


def positive_int(text: str) -> int:
    """argparse `type` for a count: the parser reports anything else as one line, exit status 2."""
    try:
        return require_positive_int("value", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
