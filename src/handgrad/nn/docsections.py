"""Docstring sections that a family of methods shares, written once.

Every activation's ``forward`` takes the same ``Z`` and ``out`` and returns
``A``; every loss's ``backward`` takes ``out`` and returns ``G``.  Each method
keeps its own docstring, which states its formula, and the family's base
class adds the shared Parameters and Returns below it when the subclass is
defined, so numpydoc, ``help()`` and the API pages show them all.
"""


def add_shared_sections(cls, sections, **fields):
    """Append ``sections[name]`` (formatted with ``fields``) to each method ``name`` that ``cls`` defines.

    A method without a docstring, or whose docstring has its own Parameters
    section, is left as it is.
    """
    for name, text in sections.items():
        method = cls.__dict__.get(name)
        doc = getattr(method, "__doc__", None)
        if doc and "Parameters" not in doc:
            method.__doc__ = doc.rstrip() + text.format(**fields).rstrip(" ")
