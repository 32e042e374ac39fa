"""Text that came from a file, made safe to print and to write.

Class names, labels, column names and paths reach handgrad from files it did
not write (a CSV's header, a model file's metadata) and from the command
line.  JSON can hold any code point, including a lone surrogate
(``"\\ud800"``), which no UTF-8 stream can encode, and an escape sequence
(``"\\x1b[2J"``) that a terminal would obey.  handgrad does not refuse such
text when it reads it (a label is a label, and the model stays usable from
Python); it escapes it where it leaves the program: :func:`printable` writes
each control character, lone surrogate and bidirectional override as a
Python escape (``\\x1b``, ``\\ud800``, ``\\u202e``), so what is printed or
written to a predictions file is valid UTF-8 and inert on a terminal.
"""

import re

# C0 and C1 controls (Unicode category Cc), lone surrogates (Cs) and the bidirectional
# overrides and isolates, which reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text):
    """``text`` (any object, as ``str``) with every unsafe character written as its Python escape.

    Parameters
    ----------
    text : object
        Converted with ``str``.

    Returns
    -------
    str
        The same text where it is safe; control characters, lone
        surrogates and bidirectional controls escaped.

    Examples
    --------
    >>> printable("cat")
    'cat'
    >>> printable("\\x1b[31mred")
    '\\\\x1b[31mred'
    >>> printable("\\ud800") == "\\\\ud800"
    True
    """
    return _UNSAFE.sub(_escape, str(text))


def _escape(match):
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable_labels(labels):
    """``labels`` with each string made :func:`printable`; numbers stay numbers."""
    return [printable(label) if isinstance(label, str) else label for label in labels]
