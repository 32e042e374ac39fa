"""The valid range of each constructor setting, declared once per class and checked in one place.

A saved piece (a layer, loss, optimizer or schedule) declares its settings'
ranges in one class attribute, as scikit-learn's estimators declare
``_parameter_constraints``::

    class Dropout(Layer):
        constraints = {"p": Real(0, 1, closed="left", meaning="the probability of dropping a unit",
                                 remedy="use e.g. hg.Dropout(0.2)")}

Two places apply the declaration: the constructor (the registry's base
class wraps every ``__init__`` of a class that has constraints, see
:class:`handgrad.registry.Registered`), and the model-file reader, which
checks a stored configuration before it builds anything or allocates an
array.  A setting without a rule is not checked; a class without
``constraints`` (a user's own layer) is not checked at all.

The vocabulary:

* :class:`Real` and :class:`Integer`: a finite number (never NaN or
  infinite, never a bool), in a range, and optionally under a ``cap``: a
  limit that is not part of the maths but keeps a finite setting from
  overflowing or from asking for an impossible allocation.
* :class:`Options`: one of a few values.
* :class:`Boolean`: ``True`` or ``False``.
* :class:`Pair`: two values that each obey one rule (Adam's ``betas``).

Every failure is one line: the class, the setting, what it must be, the
value given, and the remedy.
"""

import functools
import inspect
import math
from numbers import Integral

import numpy as np

from handgrad.errors import HandgradError

CLOSED = ("both", "left", "right", "neither")


class Rule:
    """One setting's rule.  Subclasses define :meth:`requirement` for a value that breaks it, or None.

    Parameters
    ----------
    meaning : str, optional
        What the setting is, written into the message before the rule
        ("Dropout p is the probability of dropping a unit and must …").
    remedy : str, optional
        What to do, after the rule ("…, got 1.5; use e.g. hg.Dropout(0.2)").
    """

    def __init__(self, *, meaning=None, remedy=None):
        self.meaning, self.remedy = meaning, remedy

    def describe(self):
        """What a value must be, whole: ``"lie in [0, 1)"``."""
        raise NotImplementedError

    def requirement(self, value):
        """What the setting must be if ``value`` breaks the rule (the broken part), else None."""
        raise NotImplementedError

    def check(self, owner, name, value):
        """Raise a one-line :class:`~handgrad.HandgradError` if ``value`` breaks the rule.

        Parameters
        ----------
        owner : str
            The class whose setting this is (the message's first word).
        name : str
            The setting.
        value : object
            What it was given.
        """
        requirement = self.requirement(value)
        if requirement is None:
            return
        what = f" is {self.meaning} and" if self.meaning else ""
        remedy = f"; {self.remedy}" if self.remedy else ""
        raise HandgradError(f"{owner} {name}{what} must {requirement}, got {value!r}{remedy}")


def _is_real(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


def _text(number):
    return str(number) if isinstance(number, Integral) else f"{number:g}"


class Real(Rule):
    """A finite real number in a range, optionally under a cap.

    Parameters
    ----------
    low, high : float, optional
        The range's ends (None: unbounded on that side).
    closed : {"both", "left", "right", "neither"}
        Which ends belong to the range, as in scikit-learn's ``Interval``.
    cap : float, optional
        The largest value allowed, beyond the range the maths needs: a
        slope of 1e300 is a slope, but it makes every float32 output
        infinite.  Its own message names it.
    meaning, remedy : str, optional
        See :class:`Rule`.

    Examples
    --------
    >>> Real(0, 1, closed="left").requirement(1.0)
    'lie in [0, 1)'
    >>> Real(0, closed="neither").requirement(-2) is None
    False
    >>> Real(0, cap=1e6).requirement(1e300)
    'be at most 1e+06'
    """

    def __init__(self, low=None, high=None, *, closed="both", cap=None, meaning=None, remedy=None):
        if closed not in CLOSED:
            raise HandgradError(f"closed must be one of {', '.join(CLOSED)}, got {closed!r}")
        super().__init__(meaning=meaning, remedy=remedy)
        self.low, self.high, self.closed, self.cap = low, high, closed, cap

    def _accepts(self, value):
        return _is_real(value) and math.isfinite(value)

    def _in_range(self, value):
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return self.high is None or value < self.high or (value == self.high and right)

    def describe(self):
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return f"lie in {'[' if left else '('}{_text(self.low)}, {_text(self.high)}{']' if right else ')'}"
        if self.low is not None:
            if self.low == 0 and not left:
                return "be a positive number"
            return f"be a finite number {'≥' if left else '>'} {_text(self.low)}"
        if self.high is not None:
            return f"be a finite number {'≤' if right else '<'} {_text(self.high)}"
        return "be a finite number"

    def requirement(self, value):
        if not self._accepts(value) or not self._in_range(value):
            return self.describe()
        if self.cap is not None and value > self.cap:
            return f"be at most {_text(self.cap)}"
        return None


class Integer(Real):
    """An integer (a bool is not one) in a range, optionally under a cap; see :class:`Real`.

    Examples
    --------
    >>> Integer(1).requirement(2.5)
    'be a positive integer'
    >>> Integer(1, cap=2**31 - 1).requirement(10**12)
    'be at most 2147483647'
    """

    def _accepts(self, value):
        return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))

    def describe(self):
        if self.low is not None and self.high is None:
            left = self.closed in ("both", "left")
            first = self.low if left else self.low + 1
            return "be a positive integer" if first == 1 else f"be an integer ≥ {first}"
        return super().describe().replace("a finite number", "an integer")


class Options(Rule):
    """One of a few values.

    Parameters
    ----------
    *values
        The values allowed.
    remedy : str, optional
        Added after the list of choices.

    Examples
    --------
    >>> Options("mean", "sum").check("SquaredError", "reduction", "average")
    Traceback (most recent call last):
    ...
    handgrad.errors.HandgradError: unknown reduction 'average' for SquaredError; choose one of 'mean', 'sum'
    """

    def __init__(self, *values, remedy=None):
        super().__init__(remedy=remedy)
        self.values = values

    def describe(self):
        return f"be one of {', '.join(repr(v) for v in self.values)}"

    def requirement(self, value):
        hashable = not isinstance(value, (list, dict, set))
        return None if hashable and value in self.values else self.describe()

    def check(self, owner, name, value):
        if self.requirement(value) is None:
            return
        remedy = f"; {self.remedy}" if self.remedy else ""
        raise HandgradError(f"unknown {name} {value!r} for {owner}; choose one of "
                            f"{', '.join(repr(v) for v in self.values)}{remedy}")


class Boolean(Rule):
    """``True`` or ``False`` (NumPy's booleans included)."""

    def describe(self):
        return "be True or False"

    def requirement(self, value):
        return None if isinstance(value, (bool, np.bool_)) else self.describe()


class Pair(Rule):
    """Two values (a tuple, list or array of length 2) that each obey ``rule``.

    Examples
    --------
    >>> Pair(Real(0, 1, closed="left")).requirement((0.9, 1.0))
    'lie in [0, 1), both of them'
    """

    def __init__(self, rule, *, meaning=None, remedy=None):
        super().__init__(meaning=meaning, remedy=remedy)
        self.rule = rule

    def describe(self):
        return f"{self.rule.describe()}, both of them"

    def requirement(self, value):
        if isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2 \
                and all(self.rule.requirement(item) is None for item in value):
            return None
        return self.describe()


def check_settings(owner, constraints, arguments):
    """Apply each rule of ``constraints`` to the matching entry of ``arguments``.

    Parameters
    ----------
    owner : str
        The class name, for the message.
    constraints : dict
        ``{setting: Rule}``, a class's ``constraints``.
    arguments : dict
        ``{setting: value}``: constructor arguments, or a stored configuration.
        A setting it does not hold is not checked (its default applies).

    Raises
    ------
    HandgradError
        One line naming the first setting that breaks its rule.
    """
    for name, rule in constraints.items():
        if name in arguments:
            rule.check(owner, name, arguments[name])


def checking_settings(init):
    """``init`` (a constructor) preceded by :func:`check_settings` on its arguments, by the instance's class's rules.

    A call that does not fit the signature is left to ``init``, whose
    ``TypeError`` says what is wrong.  ``inspect.signature`` of the result
    is ``init``'s.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            pass
        else:
            bound.apply_defaults()
            check_settings(type(self).__name__, type(self).constraints, bound.arguments)
        init(self, *args, **kwargs)

    __init__.checks_settings = True
    return __init__
