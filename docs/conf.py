"""Sphinx configuration of handgrad's documentation site.

Build it with ``pip install -e ".[docs]"`` and ``python -m sphinx -W -b html docs docs/_build/html``.
The Markdown guides are read by MyST (with ``$…$`` and ``$$…$$`` mathematics), the API
reference is generated from the docstrings (numpydoc) of everything in ``handgrad.__all__``,
and the gallery runs every script in ``docs/examples/`` on each build (sphinx-gallery).
"""

import os
import sys
from pathlib import Path

import handgrad

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

project = "handgrad"
author = "the handgrad developers"
copyright = "the handgrad developers"
release = version = handgrad.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
    "api_reference",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "examples/README.txt", "**/README.md", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]

# MyST: dollar mathematics as in docs/derivations.md, heading anchors for the guides' "#section" links.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# numpydoc renders Parameters/Returns/Raises/Examples; the API pages list members themselves.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": True, "inherited-members": False}
autosummary_generate = True



def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document handgrad's own members; methods scikit-learn's mixins add (``score``, ``set_fit_request``)
    are scikit-learn's to document."""
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and callable(obj) and module and not module.startswith("handgrad"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)

html_theme = "pydata_sphinx_theme"
html_title = f"handgrad {version}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}

# The gallery: every docs/examples/plot_*.py runs on each build, on small data.
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "abort_on_example_error": True,
}

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
# The MNIST example reads the original IDX files: from the shared data folder beside the repository where
# there is one (as in CI), else from $HANDGRAD_DATA or the per-user cache, where handgrad downloads them once.
SHARED_DATA = HERE.parents[1] / "shared" / "data"
# The seed documents live beside the repository too (../shared/seeds), and the guides link to them.  Without
# that folder those links cannot resolve, and only then are missing link targets not turned into errors.
if not (HERE.parents[1] / "shared" / "seeds").is_dir():
    suppress_warnings = ["myst.xref_missing"]
if (SHARED_DATA / "mnist").is_dir():
    os.environ.setdefault("HANDGRAD_DATA", str(SHARED_DATA))
