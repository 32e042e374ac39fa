"""One name → class table per kind of piece: layers, losses, optimizers, estimators.

A piece is declared once, as a class.  Defining a subclass of ``hg.Layer``,
``hg.Loss`` or ``hg.Optimizer`` adds it to its kind's registry under its class
name, and everything that offers a choice of pieces reads that registry: the
model-file reader, the command line's ``--activation``/``--loss``/
``--optimizer`` choices, the estimator's ``activation=``/``loss=`` names,
``handgrad check`` and the tests.  Nothing else keeps a list of names.

Each class also carries a short ``name`` (``"relu"``, ``"cross-entropy"``,
``"adam"``), the spelling users type; the class name is what files store.
A base class that sets ``name = None`` in its own body (``hg.Activation``)
is not registered: it is a kind of piece, not a piece.

Rebuilding from a configuration calls ``cls(**arguments)``: a piece's
configuration is its constructor's arguments (see :func:`constructor_arguments`),
so every setting survives a save and a load.
"""

import inspect
import re

from handgrad.errors import HandgradError


class Registry:
    """The classes of one kind, by class name and by short name."""

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

    def build(self, config, **extra):
        """``cls(**arguments)`` from a ``config()`` dictionary (``{"type": ..., **arguments}``)."""
        if not isinstance(config, dict):
            raise HandgradError(f"a {self.kind} configuration is a dictionary, got {type(config).__name__}")
        arguments = dict(config)
        cls = self.get(arguments.pop("type", None))
        accepted = inspect.signature(cls.__init__).parameters
        extra = {key: value for key, value in extra.items() if key in accepted}
        try:
            return cls(**arguments, **extra)
        except TypeError as exc:
            raise HandgradError(f"{cls.__name__} cannot be built from {arguments!r} ({exc})") from None


LAYERS = Registry("layer")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
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
    for name, parameter in inspect.signature(type(obj).__init__).parameters.items():
        if name in skip or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if not hasattr(obj, name):
            raise HandgradError(f"{type(obj).__name__} must keep its argument {name!r} as self.{name} "
                                f"so that it can be saved and rebuilt")
        value = getattr(obj, name)
        arguments[name] = value.item() if hasattr(value, "item") and not hasattr(value, "__len__") else value
    return arguments
