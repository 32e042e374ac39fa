"""One name → class table per kind of saved piece, and the one base class that fills them.

A piece is declared once, as a class.  Layers, losses, optimizers, learning-rate
schedules and estimators all derive from :class:`Registered`: defining a
subclass of ``hg.Layer``, ``hg.Loss``, ``hg.Optimizer``, a schedule or an
estimator adds it to its kind's registry under its class name, and
everything that offers a choice of pieces reads that registry: the
model-file reader, the command line's ``--activation``/``--loss``/
``--optimizer`` choices, the estimator's ``activation=``/``loss=`` names,
``handgrad check`` and the tests.  Nothing else keeps a list of names.

Each class also carries a short ``name``, the spelling users type, by one
rule: the class name in snake case with hyphens (``LeakyReLU`` →
``"leaky-relu"``, ``SGD`` → ``"sgd"``, ``StepDecay`` → ``"step-decay"``)
unless the class sets its own (``"cross-entropy"``).  The class name is what
files store.  A base class that sets ``name = None`` in its own body
(``hg.Activation``) is not registered: it is a kind of piece, not a piece.

A piece's configuration is its constructor's arguments (see
:func:`constructor_arguments`), ``{"type": class name, **arguments}``, and
rebuilding one is ``cls(**arguments)`` (:meth:`Registry.build`), so every
setting survives a save and a load, and a user's subclass comes back as
itself.  The valid range of each setting is declared once per class
(``constraints``, see :mod:`handgrad.constraints`) and checked by the
constructor and by the model-file reader alike.

Examples
--------
>>> hg.registry.LAYERS.by_name("leaky-relu") is hg.LeakyReLU, hg.Adam.name, hg.schedules.StepDecay.name
(True, 'adam', 'step-decay')
>>> config = hg.Dense(3, 2).config()
>>> config
{'type': 'Dense', 'n_in': 3, 'n_out': 2, 'init': 'auto', 'seed': None}
>>> hg.registry.LAYERS.build(config)
Dense(3, 2)
"""

import functools
import inspect
import re

from handgrad.constraints import check_settings, checking_settings, float_dtype
from handgrad.errors import HandgradError


class Registry:
    """The classes of one kind, by class name and by short name.

    Parameters
    ----------
    kind : str
        What the classes are ("layer", "optimizer"), for messages.
    """

    def __init__(self, kind):
        self.kind = kind
        self._by_type = {}
        self._providers = {}

    def provide(self, type_names, load):
        """Declare that calling ``load()`` registers the classes ``type_names`` (a module that is slow to import).

        :meth:`get` calls it the first time one of those names is asked for
        and not yet registered; nothing else here knows where they live.
        """
        self._providers.update({name: load for name in type_names})

    def add(self, cls):
        """Register ``cls`` under its class name, unless it is a base class (``name = None`` in its body)."""
        if "name" in cls.__dict__ and cls.name is None:
            return cls        # a base class: not a piece
        self._by_type[cls.__name__] = cls
        return cls

    def __contains__(self, type_name):
        return type_name in self._by_type or type_name in self._providers

    def type_names(self):
        """Every class name this registry can build, registered or provided."""
        return sorted({*self._by_type, *self._providers})

    def __iter__(self):
        return iter(self._by_type.values())

    def get(self, type_name):
        """The class stored under ``type_name`` (a class name, as files store it)."""
        if type_name not in self._by_type and type_name in self._providers:
            self._providers.pop(type_name)()
        cls = self._by_type.get(type_name)
        if cls is None:
            raise HandgradError(f"unknown {self.kind} type {type_name!r} (known: {', '.join(self._by_type)}); "
                                f"define (or import) the class before loading, so that it registers")
        return cls

    def choices(self, where=None):
        """``{short name: class}`` for every class offered as a choice, optionally filtered."""
        return {cls.name: cls for cls in self._by_type.values()
                if cls.name is not None and (where is None or where(cls))}

    def by_name(self, name, where=None, what=None):
        """The class a user asked for by short name, or a one-line error listing the choices."""
        options = self.choices(where)
        cls = options.get(name)
        if cls is None:
            raise HandgradError(f"unknown {what or self.kind} {name!r}; choose one of {', '.join(options)}")
        return cls

    def check(self, config, dtype=None):
        """``(cls, arguments)`` of a ``config()`` dictionary, checked without building anything.

        The type must be registered, the arguments must fit the class's
        constructor (none unknown, none missing), and each must obey the
        class's ``constraints``, in ``dtype`` (the model's floating-point
        type) where a rule asks for it.  The model-file reader calls this
        before it reads a layer's arrays, so a hostile setting is refused
        before any allocation.

        Raises
        ------
        HandgradError
            One line naming the type, or the setting and its rule.
        """
        if not isinstance(config, dict):
            raise HandgradError(f"a {self.kind} configuration is a dictionary, got {type(config).__name__}")
        arguments = dict(config)
        cls = self.get(arguments.pop("type", None))
        try:
            inspect.signature(cls.__init__).bind(None, **arguments)
        except TypeError as exc:
            raise HandgradError(f"{cls.__name__} cannot be built from {arguments!r} ({exc})") from None
        check_settings(cls.__name__, getattr(cls, "constraints", {}), arguments, float_dtype(dtype))
        return cls, arguments

    def build(self, config, **extra):
        """``cls(**arguments)`` from a ``config()`` dictionary (``{"type": ..., **arguments}``), checked by :meth:`check`.

        ``extra`` arguments (a layer's ``dtype``) are passed to classes whose
        constructor takes them.
        """
        cls, arguments = self.check(config, extra.get("dtype"))
        accepted = inspect.signature(cls.__init__).parameters
        extra = {key: value for key, value in extra.items() if key in accepted}
        try:
            return cls(**arguments, **extra)
        except TypeError as exc:
            raise HandgradError(f"{cls.__name__} cannot be built from {arguments!r} ({exc})") from None


LAYERS = Registry("layer")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
SCHEDULES = Registry("schedule")
ESTIMATORS = Registry("estimator")


def snake_case(class_name):
    """``LeakyReLU`` → ``leaky_relu``, ``SoftmaxCrossEntropy`` → ``softmax_cross_entropy``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name)
    return words.lower()


def constructor_arguments(obj, skip=("self", "dtype")):
    """``{argument: value}`` for each named argument of ``type(obj).__init__``.

    As in scikit-learn's ``get_params``, a piece keeps each constructor
    argument in an attribute of the same name; that makes its configuration
    (and so its model-file entry) follow from its signature with no list to
    keep in step.  ``dtype`` is stored once per model, not per piece.
    """
    arguments = {}
    for name in _named_parameters(type(obj).__init__):
        if name in skip:
            continue
        if not hasattr(obj, name):
            raise HandgradError(f"{type(obj).__name__} must keep its argument {name!r} as self.{name} "
                                f"so that it can be saved and rebuilt")
        value = getattr(obj, name)
        arguments[name] = value.item() if hasattr(value, "item") and not hasattr(value, "__len__") else value
    return arguments


@functools.cache
def _named_parameters(init):
    """The names of ``init``'s parameters but ``*args`` and ``**kwargs``, read once per function: the training
    loop saves its optimizer's state, configuration included, every epoch, and ``inspect.signature`` takes
    tens of microseconds."""
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return tuple(name for name, parameter in inspect.signature(init).parameters.items() if parameter.kind not in kinds)


class Registered:
    """Base of every piece handgrad saves by its configuration: registration, naming, ``config()``, checks.

    A kind's base class names its registry in its class statement and sets
    ``name = None`` in its body, so that it is not registered itself::

        class Layer(Registered, registry=LAYERS):
            name = None

    Every subclass is then registered in that registry under its class name
    (a later class of the same name replaces the earlier one), and gets the
    short ``name`` of the one rule (see the module docstring) unless it sets
    its own.

    ``constraints`` declares the valid range of constructor settings,
    ``{setting: rule}`` (see :mod:`handgrad.constraints`).  A subclass's
    declaration adds to its parents' (a rule it names replaces theirs), and
    every ``__init__`` of a class that has rules checks its arguments
    against them before it runs, so a subclass never repeats a check.  A
    class without rules is not checked.

    ``config()`` is ``{"type": class name, **constructor arguments}``: a
    piece keeps each constructor argument in an attribute of the same name
    (as scikit-learn's estimators do), so its configuration follows from its
    signature.  :meth:`Registry.build` rebuilds it as ``cls(**arguments)``.

    Examples
    --------
    >>> import handgrad as hg
    >>> class AdamW(hg.Adam):
    ...     def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    ...         super().__init__(lr, betas, eps)
    ...         self.weight_decay = weight_decay
    >>> AdamW(weight_decay=0.1).config()["type"], AdamW.name
    ('AdamW', 'adam-w')
    >>> hg.registry.OPTIMIZERS.build(AdamW(weight_decay=0.1).config()).weight_decay
    0.1
    """

    name = None
    registry = None
    constraints = {}

    def __init_subclass__(cls, registry=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if registry is not None:
            cls.registry = registry
        if "name" not in cls.__dict__:
            cls.name = snake_case(cls.__name__).replace("_", "-")
        inherited = {}
        for base in reversed(cls.__mro__[1:]):
            inherited.update(base.__dict__.get("constraints", {}))
        cls.constraints = {**inherited, **cls.__dict__.get("constraints", {})}
        init = cls.__dict__.get("__init__")
        if cls.constraints and init is not None and not getattr(init, "checks_settings", False):
            cls.__init__ = checking_settings(init)
        if cls.registry is not None:
            cls.registry.add(cls)

    def config(self):
        """``{"type": class name, **constructor arguments}``, from which the kind's registry rebuilds the piece."""
        return {"type": type(self).__name__, **constructor_arguments(self)}

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in constructor_arguments(self).items())
        return f"{type(self).__name__}({arguments})"
