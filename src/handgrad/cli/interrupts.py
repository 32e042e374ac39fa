"""Ctrl-C and SIGTERM as an exception the CLI can clean up after.

The handlers raise :class:`Interrupted` at the next Python bytecode, so a
long training epoch stops promptly.  Inside :meth:`SignalGuard.deferred`
(writing a file, taking a snapshot) a signal is only noted, and raised when
the block ends: a model or checkpoint is never abandoned half-written.
"""

import signal
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A SIGINT or SIGTERM arrived.

    A ``BaseException`` like ``KeyboardInterrupt``, so that no ``except
    Exception`` on the way swallows it.  ``note`` says what was saved, for
    the final message; the exit code is ``128 + signal number`` (130 for
    SIGINT, 143 for SIGTERM), the shell's convention.
    """

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
        self.note = "nothing was saved"

    @property
    def name(self):
        return signal.Signals(self.signum).name

    @property
    def exit_code(self):
        return 128 + self.signum


class SignalGuard:
    """``with guard.installed():`` turns signals into :class:`Interrupted`; ``guard.deferred()`` postpones them."""

    def __init__(self):
        self._depth = 0
        self._pending = None

    @contextmanager
    def installed(self):
        """Handle SIGINT and SIGTERM inside the block; put the previous handlers back after it."""
        previous = {signum: signal.signal(signum, self._handle) for signum in HANDLED}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._pending = None

    def _handle(self, signum, frame):
        if self._depth:
            self._pending = self._pending or signum
            return
        raise Interrupted(signum)

    @contextmanager
    def deferred(self):
        """Run the block to its end even if a signal arrives; raise it afterwards."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)


guard = SignalGuard()
