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
* :class:`Vector`: a non-empty list of numbers that each obey one rule (the
  preprocessing's column means and deviations).

A number the model computes with must also survive conversion to the
model's dtype: ``Real(..., in_dtype=True)`` asks, whenever the dtype is
known (a layer's ``dtype`` argument, a model file's ``"dtype"``), that the
value be within the dtype's range and, for a quantity that must be
positive (a scale, an ``eps``), at least the dtype's smallest normal
number.  ``1e-300`` is a positive float64 but 0 in float32, where dividing
by it gives infinities.

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

    def dtype_requirement(self, value, dtype):
        """What the setting must be if ``value`` (which obeys :meth:`requirement`) cannot be used in ``dtype``, else None."""
        return None

    def check(self, owner, name, value, dtype=None):
        """Raise a one-line :class:`~handgrad.HandgradError` if ``value`` breaks the rule.

        Parameters
        ----------
        owner : str
            The class whose setting this is (the message's first word).
        name : str
            The setting.
        value : object
            What it was given.
        dtype : numpy dtype, optional
            The floating-point type the value will be computed in, when known.
        """
        requirement = self.requirement(value)
        if requirement is None and dtype is not None:
            requirement = self.dtype_requirement(value, np.dtype(dtype))
        if requirement is None:
            return
        what = f" is {self.meaning} and" if self.meaning else ""
        remedy = f"; {self.remedy}" if self.remedy else ""
        raise HandgradError(f"{owner} {name}{what} must {requirement}, got {_shown(value)}{remedy}")


def _shown(value, limit=80):
    """``repr(value)``, cut to ``limit`` characters: a stored list may hold a million numbers."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...]"


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
    in_dtype : bool, default False
        Where the dtype is known, also require the value to lie within its
        range and, when the range excludes 0 from below, to be at least its
        smallest normal number (module docstring).
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
    >>> Real(0, closed="neither", in_dtype=True).dtype_requirement(1e-300, np.dtype(np.float32))
    'be at least 1.17549e-38, the smallest normal float32'
    """

    def __init__(self, low=None, high=None, *, closed="both", cap=None, in_dtype=False, meaning=None, remedy=None):
        if closed not in CLOSED:
            raise HandgradError(f"closed must be one of {', '.join(CLOSED)}, got {closed!r}")
        super().__init__(meaning=meaning, remedy=remedy)
        self.low, self.high, self.closed, self.cap, self.in_dtype = low, high, closed, cap, in_dtype

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

    def dtype_requirement(self, value, dtype):
        if not self.in_dtype or dtype.kind != "f":
            return None
        magnitude = abs(float(value))
        return _dtype_problem(magnitude, magnitude, self.low == 0 and self.closed in ("right", "neither"), dtype)


def _dtype_problem(largest, smallest, positive, dtype):
    """What magnitudes between ``smallest`` and ``largest`` must be to be computed with in ``dtype``, or None."""
    info = np.finfo(dtype)
    if largest > info.max:
        return f"lie within {dtype.name}'s range (at most {float(info.max):g} in magnitude)"
    if positive and smallest < info.tiny:
        return f"be at least {float(info.tiny):g}, the smallest normal {dtype.name}"
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

    def check(self, owner, name, value, dtype=None):
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


class Vector(Rule):
    """A non-empty list (or 1-D array) of numbers that each obey ``rule``, a :class:`Real`; checked whole by NumPy.

    Examples
    --------
    >>> Vector(Real(0, closed="neither")).requirement([1.0, 0.0])
    'be a positive number, every one of them (item 1 is 0)'
    """

    def __init__(self, rule, *, meaning=None, remedy=None):
        super().__init__(meaning=meaning, remedy=remedy)
        self.rule = rule

    def describe(self):
        return f"be a non-empty list of numbers that each {self.rule.describe()}"

    def _array(self, value):
        if not isinstance(value, (list, tuple, np.ndarray)) or len(value) == 0:
            return None
        if isinstance(value, np.ndarray):
            ok = value.dtype.kind in "iuf"
        else:
            ok = all(_is_real(v) for v in value)
        if not ok:
            return None
        with np.errstate(over="ignore"):
            array = np.asarray(value, dtype=np.float64)
        return array if array.ndim == 1 else None

    def requirement(self, value):
        array = self._array(value)
        if array is None:
            return self.describe()
        rule = self.rule
        bad = ~np.isfinite(array)
        left, right = rule.closed in ("both", "left"), rule.closed in ("both", "right")
        if rule.low is not None:
            bad |= (array < rule.low) if left else (array <= rule.low)
        if rule.high is not None:
            bad |= (array > rule.high) if right else (array >= rule.high)
        if rule.cap is not None:
            bad |= array > rule.cap
        if bad.any():
            i = int(np.argmax(bad))
            return f"{rule.requirement(float(array[i]))}, every one of them (item {i} is {array[i]:g})"
        return None

    def dtype_requirement(self, value, dtype):
        if not self.rule.in_dtype or dtype.kind != "f":
            return None
        magnitudes = np.abs(self._array(value))
        positive = self.rule.low == 0 and self.rule.closed in ("right", "neither")
        problem = _dtype_problem(magnitudes.max(), magnitudes.min(), positive, dtype)
        return None if problem is None else f"{problem}, every one of them"


def check_settings(owner, constraints, arguments, dtype=None):
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
    dtype : numpy dtype, optional
        The model's floating-point type, for rules that need it (``in_dtype``).

    Raises
    ------
    HandgradError
        One line naming the first setting that breaks its rule.
    """
    for name, rule in constraints.items():
        if name in arguments:
            rule.check(owner, name, arguments[name], dtype)


def float_dtype(value):
    """``value`` (``"float32"``, ``np.float32``, a dtype) as a floating-point NumPy dtype, or None if it is none."""
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):
        return None
    return dtype if dtype.kind == "f" else None


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
            check_settings(type(self).__name__, type(self).constraints, bound.arguments,
                           float_dtype(bound.arguments.get("dtype")))
        init(self, *args, **kwargs)

    __init__.checks_settings = True
    return __init__
