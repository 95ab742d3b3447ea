"""Command line: `python -m pipeline COMMAND ...` and the `moving-square` script.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so
``generate --help`` does not pay for importing TensorFlow.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pipeline.errors import DataError, UsageError, data_error_in

COMMANDS = {
    "generate": ("pipeline.dataset.generate", "write a sharded HDF5 dataset of moving-square sequences"),
    "verify": ("pipeline.dataset.verify", "check every shard of a dataset against its manifest"),
    "show": ("pipeline.dataset.show", "plot one sequence's frames side by side"),
    "train": ("pipeline.training.train", "train a CNN-LSTM model from a dataset"),
    "evaluate": ("pipeline.training.evaluate", "loss and accuracy of a trained model on a test split"),
    "predict": ("pipeline.training.predict", "classify fresh sequences with a trained model"),
    "bench": ("pipeline.bench.command", "measure generation, loading, training and accuracy; write a result file"),
    "report": ("pipeline.results.report", "merge result files into Markdown/CSV tables and plots"),
    "compare": ("pipeline.results.compare", "place result files beside the reference machines: ratios, spread, causes"),
}
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exits with status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default after its help, unless there is none to show (None, or an off flag)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """Top-level parser; only `command`'s module is imported to add its arguments."""
    parser = OneLineParser(prog="pipeline", description=__doc__.splitlines()[0],
                           epilog="Run `pipeline COMMAND --help` for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (module, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text,
                           formatter_class=DefaultsHelpFormatter)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return module.run(args)
    except UsageError as e:
        print(f"pipeline {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DataError as e:
        print(f"pipeline {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # damage found mid-read reaches here through tf.data as an op error
        message = data_error_in(e)
        if message is None:
            raise
        print(f"pipeline {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pipeline {args.command}: interrupted", file=sys.stderr)
        return 130
