"""The ``handgrad`` command: train, evaluate, predict, check, derive, diagnose, export.

Every user mistake (a :class:`~handgrad.errors.HandgradError`, or an
``OSError`` from a file that cannot be read or written) ends as one line on
stderr naming the problem and the fix, with exit code 2 and no traceback
(``--debug`` shows it); so does running out of memory (a ``MemoryError``),
after which nothing has been written, as every write is atomic.  Text from
files in those lines is escaped (:func:`handgrad.io.text.printable`).  A
reader that stops reading early (``| head``) cuts nothing short (see
:mod:`.console`).  Ctrl-C and SIGTERM end with 130 and 143 after the command
has saved what it can (see :mod:`.interrupts`).
"""

import argparse
import sys
import traceback

from handgrad._version import __version__
from handgrad.cli import check, console, derive, diagnose, evaluate, export, predict, train
from handgrad.cli.interrupts import Interrupted, guard
from handgrad.cli.memory import out_of_memory
from handgrad.errors import HandgradError
from handgrad.io.files import os_error_message
from handgrad.io.text import printable

EXAMPLES = """\
examples:
  handgrad train                                 train on digits with its preset
  handgrad train --dataset mnist --data-dir ../shared/data --hidden 256,128
  handgrad evaluate handgrad-out/model.npz
  handgrad predict handgrad-out/model.npz samples.csv --out predictions.csv
  handgrad check
  handgrad export handgrad-out/model.npz --format onnx --out model.onnx

Run 'handgrad COMMAND --help' for the options of each command.
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit with 2, like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    parser = _Parser(prog="handgrad", description="Neural-network classifiers trained by hand-derived backpropagation.",
                     epilog=EXAMPLES, formatter_class=console.HelpFormatter)
    parser.add_argument("--version", action="version", version=f"handgrad {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (train, evaluate, predict, check, derive, diagnose, export):
        module.add_parser(commands, [common])
    return parser


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Output to a reader that has gone (``| head``) is dropped quietly and the
    command runs to its end (see :mod:`.console`).
    """
    with console.session():
        return _run(argv)


def _run(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    console.set_command(args.command)
    try:
        with guard.installed():
            return args.run(args)
    except Interrupted as stop:
        print(printable(f"handgrad: interrupted by {stop.name}; {stop.note}"), file=sys.stderr)
        return stop.exit_code
    except (HandgradError, OSError, MemoryError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"handgrad {args.command}: error: {printable(_one_line(exc))}", file=sys.stderr)
        return 2


def _one_line(exc):
    if isinstance(exc, OSError):
        return os_error_message(exc)
    if isinstance(exc, MemoryError):
        return out_of_memory(exc)
    return " ".join(str(exc).split())
