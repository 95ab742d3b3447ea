"""Error kinds the command line turns into one-line messages, and the check every count shares.

UsageError: bad input from the user (exit status 2, nothing written).
DataError:  a dataset that is missing, truncated or inconsistent; the message names the file.
"""
import argparse
import re


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


AUTO = "auto"


def positive_int_or_auto(text: str) -> int | str:
    """argparse `type` for a count that may be left to the program: a positive integer, or "auto"."""
    if text == AUTO:
        return AUTO
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}") from None


# How a DataError reads once TensorFlow has carried it out of a tf.data pipeline: the core's, raised
# in a `tf.numpy_function`, as the Python exception's text inside an op error; the graph mechanism's
# as a failed `tf.debugging.Assert` with the shard's path among its data.
_RAISED_IN_PIPELINE = re.compile(r"DataError: ([^\n]+)")
_ASSERTED_IN_GRAPH = re.compile(r"\[corrupt chunk in shard\] \[([^\]]+)\] \[at sample\] \[(\d+)\]"
                                r"|\[truncated shard\] \[([^\]]+)\]")


def data_error_in(error: BaseException) -> str | None:
    """The one-line message of the DataError behind `error` (itself, one it was raised from, or one
    a tf.data pipeline carried out as an op error), or None when there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DataError):
            return str(error).splitlines()[0]
        text = str(error)
        if m := _RAISED_IN_PIPELINE.search(text):
            return m.group(1).strip()
        if m := _ASSERTED_IN_GRAPH.search(text):
            return (f"{m.group(1)}: corrupt chunk at sample {m.group(2)} (its bytes changed since the dataset "
                    f"was opened)" if m.group(1) else f"{m.group(3)}: truncated")
        error = error.__cause__ or error.__context__
    return None
