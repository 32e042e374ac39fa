"""How a piece declares its own derivation: the :class:`Derivation` record.

Each layer and loss class carries a :class:`Derivation` as its class attribute
``derivation``: the forward equation, one backward equation per input and
parameter, the seed documents it comes from, and the section of
``docs/derivations.md`` that derives it.  ``hg.derive``
(:mod:`handgrad.derivations.derive`) reads these declarations to print the
derivation of one concrete network; the formula syntax is described in
:mod:`handgrad.derivations.notation`.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Derivation:
    """The derivation a piece declares: ``derivation = Derivation(...)`` in its class body.

    Every string is in the formula syntax of :mod:`handgrad.derivations.notation`
    (``note`` only takes placeholders).

    Parameters
    ----------
    forward : str
        The forward equation (``"Z = X W + b"``).
    backward : dict
        ``{"input": equation, parameter name: equation, …}``: the gradient the
        piece hands back (``∂J/∂(input)``, for a loss ``∂L/∂Z``) and one per
        parameter, keyed by the names in ``parameter_names``.
    shapes : dict, optional
        Keyed like ``"forward"`` and ``backward``: the operands' shapes
        (``"n×$in · $in×$out + $out"``).  The result's shape is appended;
        without an entry only the input and result shapes show.
    seeds : str or tuple of str
        The seed documents the piece comes from (``("000",)``), or ().
    section : str, optional
        The anchor of its section in ``docs/derivations.md``.
    note : str, optional
        One line of remarks (a placeholder-filled sentence, not a formula).

    Examples
    --------
    >>> import handgrad as hg
    >>> hg.Tanh.derivation.backward["input"]
    '∂J/∂Z = G ⊙ (1 − A²)'
    """

    forward: str
    backward: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    seeds: tuple = ()
    section: str = None
    note: str = None

    def __post_init__(self):
        seeds = (self.seeds,) if isinstance(self.seeds, str) else tuple(self.seeds)
        object.__setattr__(self, "seeds", seeds)
