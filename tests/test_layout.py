"""The package's layers: every import of a handgrad module runs downward (or within a layer).

From the base up: errors, validation, files, the registry and the version; nn; optim;
training; data; io; report; the estimator; the command line.  The package's
``__init__`` (the public facade) and ``__main__`` may import anything.
Imports inside functions count too: a lazy import still ties the layers.
"""

import ast
from pathlib import Path

import pytest

import handgrad

PACKAGE = Path(handgrad.__file__).parent
LAYERS = [
    {"errors", "validation", "files", "registry", "_version"},
    {"nn"},
    {"optim"},
    {"training"},
    {"derivations"},
    {"data"},
    {"io"},
    {"report"},
    {"estimator", "estimators"},
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
FACADE = {"__init__", "__main__"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts in (("__init__",), ("__main__",)):
            continue
        yield path, parts[0]


def _imported_parts(tree, path):
    """The first component under ``handgrad`` of every handgrad module that ``tree`` imports."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                  # relative: resolve against the module's package
                base = ".".join(package[:len(package) - node.level + 1] + ((base,) if base else ()))
            names = [base] if base != "handgrad" else [f"handgrad.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "handgrad":
                yield node.lineno, parts[1] if len(parts) > 1 else "handgrad"


MODULES = list(_modules())


@pytest.mark.parametrize("path, layer", MODULES, ids=[str(path.relative_to(PACKAGE)) for path, _ in MODULES])
def test_imports_run_downward(path, layer):
    assert layer in RANK, f"{layer} is in no layer: add it to LAYERS in {__file__}"
    upward = []
    for line, target in _imported_parts(ast.parse(path.read_text(encoding="utf-8")), path):
        if target == "handgrad" or target in FACADE:
            upward.append(f"line {line}: the package facade")
        elif target not in RANK:
            upward.append(f"line {line}: {target}, which is in no layer")
        elif RANK[target] > RANK[layer]:
            upward.append(f"line {line}: {target} (layer {RANK[target]}) from layer {RANK[layer]}")
    allowed_facade = layer == "cli"         # the command line uses the public API: `import handgrad as hg`
    upward = [entry for entry in upward if not (allowed_facade and "facade" in entry)]
    assert not upward, f"{path.relative_to(PACKAGE)} imports upward: " + "; ".join(upward)
