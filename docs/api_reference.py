"""A Sphinx extension that writes the API reference from ``handgrad.__all__`` at each build.

The page lists every public name, grouped by what it is, so a name added to
``__all__`` appears in the reference with no page to edit, and a name
removed disappears.  The generated file (``docs/api.rst``) is not tracked.
"""

import inspect
from pathlib import Path

import handgrad as hg

GROUPS = [
    ("Networks", lambda obj: isinstance(obj, type) and (issubclass(obj, (hg.Layer, hg.Sequential)))),
    ("Losses", lambda obj: isinstance(obj, type) and issubclass(obj, hg.Loss)),
    ("Optimizers", lambda obj: isinstance(obj, type) and issubclass(obj, hg.Optimizer)),
    ("Estimators", lambda obj: isinstance(obj, type) and hasattr(obj, "fit") and hasattr(obj, "get_params")),
    ("Training", lambda obj: isinstance(obj, type) and issubclass(obj, (hg.Callback, hg.History, hg.TrainingContext))),
    ("Errors", lambda obj: isinstance(obj, type) and issubclass(obj, Exception)),
    ("Modules", inspect.ismodule),
    ("Functions", callable),
    ("Other classes", lambda obj: isinstance(obj, type)),
]


def _grouped():
    seen, groups = set(), []
    for title, belongs in GROUPS:
        names = [name for name in hg.__all__ if name not in seen and belongs(getattr(hg, name))]
        seen.update(names)
        if names:
            groups.append((title, sorted(names, key=str.lower)))
    missing = sorted(set(hg.__all__) - seen)
    if missing:
        raise RuntimeError(f"handgrad.__all__ names with no group in docs/api_reference.py: {missing}")
    return groups


def write_api_page(app):
    lines = ["API reference", "=============", "",
             "Everything ``import handgrad as hg`` exports (``hg.__all__``), generated from the docstrings.", "",
             ".. currentmodule:: handgrad", ""]
    for title, names in _grouped():
        lines += [title, "-" * len(title), "", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   {name}" for name in names]
        lines.append("")
    text = "\n".join(lines)
    path = Path(app.srcdir) / "api.rst"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def setup(app):
    app.connect("config-inited", lambda app, config: write_api_page(app))    # before the sources are listed
    return {"parallel_read_safe": True}
