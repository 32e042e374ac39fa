"""What the commands print: output that a reader leaving early cannot break, and one-line warnings.

A reader may stop reading before a command is done: ``handgrad check |
head -1``, ``handgrad evaluate MODEL --plots DIR | head -3``.  Python then
gets ``BrokenPipeError`` at the next write (it ignores SIGPIPE), which
would end the command half-way, with plots unwritten and an error message
about a pipe.  Inside :func:`session`, standard output and standard error
are wrapped so that a write to a closed pipe goes quietly nowhere instead:
the command finishes its work (model files, plots, predictions written
with ``--out``), prints nothing about the pipe, and exits with its own
code (0 on success), as if the reader had read everything.  Only that
stream falls silent; the other one still works.

Warnings (:func:`warn`) are one line on standard error,
``handgrad COMMAND: warning: PROBLEM; REMEDY``: something the command did
as asked but that is probably not what was meant.  They never change the
exit code.
"""

import argparse
import io
import os
import shutil
import sys
from contextlib import contextmanager

# The widest line of any --help: wider terminals get no wider text, which stays readable.
HELP_WIDTH = 100

# The command being run, for the prefix of warnings ("handgrad train: warning: ...").
_state = {"command": None}


class _QuietWhenClosed:
    """A text stream whose writes are dropped, without an error, once its reader has gone."""

    def __init__(self, stream):
        self._stream = stream
        self.reader_gone = False

    def write(self, text):
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self):
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self):
        """Point the stream's descriptor at /dev/null, so text still buffered, and the interpreter's
        flush at exit, go nowhere instead of raising again."""
        self.reader_gone = True
        try:
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass        # a stream without a descriptor (a test's capture): dropping writes is enough

    def __getattr__(self, name):        # isatty, fileno, encoding, ... of the stream itself
        return getattr(self._stream, name)


@contextmanager
def session():
    """Run a command with standard output and error that go quiet when their reader has gone."""
    saved = sys.stdout, sys.stderr, _state["command"]
    sys.stdout, sys.stderr = _QuietWhenClosed(saved[0]), _QuietWhenClosed(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr, _state["command"] = saved


def set_command(name):
    """Name the command that warnings come from."""
    _state["command"] = name


def warn(message, command=None):
    """One line on standard error: ``handgrad COMMAND: warning: MESSAGE`` (the command being run by default)."""
    command = command or _state["command"]
    prefix = "handgrad" + (f" {command}" if command else "")
    print(f"{prefix}: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` at most :data:`HELP_WIDTH` columns wide: a one-paragraph description is wrapped like the
    option help, while text laid out by hand (the examples, the presets table: it holds newlines) is kept."""

    def __init__(self, prog, **kwargs):
        kwargs.setdefault("width", min(shutil.get_terminal_size().columns, HELP_WIDTH) - 2)
        super().__init__(prog, **kwargs)

    def _fill_text(self, text, width, indent):
        if "\n" in text.strip("\n"):
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)
