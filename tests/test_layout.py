"""The package's layers: every import of a handgrad module runs downward (or within a layer).

From the base up: errors, the array operations, validation, the settings rules, the registry, the version, the compiled kernels and the file primitives
(``io.files``); the metrics (numbers and text, no plotting); the tasks; nn; optim; training; the derivation tooling; data; io (the model-file
format); report; the estimators; the command line.  A module belongs to the most specific
entry that names it (``io.files`` before ``io``).  The package's ``__init__`` (the public
facade) and ``__main__`` may import anything.  Imports inside functions count too (a lazy
import still ties the layers), and so do imports done at run time through
``importlib.import_module`` or ``__import__``.
"""

import ast
from pathlib import Path

import pytest

import handgrad

PACKAGE = Path(handgrad.__file__).parent
LAYERS = [
    {"errors", "arrays", "validation", "constraints", "registry", "_version", "_compiled", "_kernels", "_csrc_digest", "io.files"},
    {"report.metrics"},
    {"tasks"},
    {"nn"},
    {"optim"},
    {"training"},
    {"derivations"},
    {"data"},
    {"io"},
    {"report"},
    {"estimators"},
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
FACADE = {"__init__", "__main__"}
# Compiled extension modules (C sources in csrc/): modules without a .py file, built or not.
EXTENSIONS = {("_kernels",)}
DYNAMIC_IMPORTS = {"import_module", "__import__"}


def layer_of(parts):
    """The entry of LAYERS that holds the module ``parts`` (names under ``handgrad``): the longest prefix."""
    for size in range(len(parts), 0, -1):
        name = ".".join(parts[:size])
        if name in RANK:
            return name
    return parts[0] if parts else "handgrad"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts in (("__init__",), ("__main__",)):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, parts


def _is_module(parts):
    if tuple(parts) in EXTENSIONS:
        return True
    target = PACKAGE.joinpath(*parts)
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def _string_constants(tree):
    """``{name: text}`` of the module-level assignments of a string constant (``_MODULE = "handgrad.x"``)."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            constants.update({target.id: node.value.value for target in node.targets if isinstance(target, ast.Name)})
    return constants


def _dynamic_target(node, constants):
    """The module name an ``import_module(...)``/``__import__(...)`` call loads, or ``"?"`` if it is not a constant."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in DYNAMIC_IMPORTS or not node.args:
        return None
    argument = node.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    if isinstance(argument, ast.Name) and argument.id in constants:
        return constants[argument.id]
    return "?"


def _imported_modules(tree, path):
    """``(line, parts)`` for every handgrad module ``tree`` imports, ``parts`` being its names under ``handgrad``."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    constants = _string_constants(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                  # relative: resolve against the module's package
                base = ".".join(package[:len(package) - node.level + 1] + ((base,) if base else ()))
            names = [f"{base}.{alias.name}" if _is_module((*base.split(".")[1:], alias.name)) else base
                     for alias in node.names]
        elif isinstance(node, ast.Call) and (target := _dynamic_target(node, constants)) is not None:
            if target == "?":
                yield node.lineno, ("?",)
                continue
            names = [target]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "handgrad":
                yield node.lineno, tuple(parts[1:])


MODULES = list(_modules())

# Run-time imports of other libraries' modules, by the function that makes them, and why no handgrad module
# can come through it.
FOREIGN_IMPORTS = {
    ("arrays.py", "_ops_named"): "an array namespace named in a pickle (numpy, torch, array_api_strict...); "
                                 "names under handgrad are refused",
}


def foreign_import(path, line):
    """The reason given in FOREIGN_IMPORTS for the run-time import at ``line`` of ``path``, or None."""
    name = path.relative_to(PACKAGE).as_posix()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.lineno <= line <= node.end_lineno:
            if (name, node.name) in FOREIGN_IMPORTS:
                return FOREIGN_IMPORTS[name, node.name]
    return None


@pytest.mark.parametrize("path, parts", MODULES, ids=[str(path.relative_to(PACKAGE)) for path, _ in MODULES])
def test_imports_run_downward(path, parts):
    layer = layer_of(parts)
    assert layer in RANK, f"{layer} is in no layer: add it to LAYERS in {__file__}"
    upward = []
    for line, target in _imported_modules(ast.parse(path.read_text(encoding="utf-8")), path):
        if target == ("?",):
            if foreign_import(path, line) is None:
                upward.append(f"line {line}: a run-time import of a name this test cannot read")
            continue
        target_layer = layer_of(target)
        if not target or target[0] in FACADE:
            upward.append(f"line {line}: the package facade")
        elif target_layer not in RANK:
            upward.append(f"line {line}: {target_layer}, which is in no layer")
        elif RANK[target_layer] > RANK[layer]:
            upward.append(f"line {line}: {target_layer} (layer {RANK[target_layer]}) from layer {RANK[layer]}")
    allowed_facade = layer == "cli"         # the command line uses the public API: `import handgrad as hg`
    upward = [entry for entry in upward if not (allowed_facade and "facade" in entry)]
    assert not upward, f"{path.relative_to(PACKAGE)} imports upward: " + "; ".join(upward)


def test_the_checker_sees_run_time_imports(tmp_path):
    """An ``importlib`` import of a module named in a constant is read like a plain import."""
    source = ('import importlib\n_MODULE = "handgrad.estimators"\n'
              'def load():\n    return importlib.import_module(_MODULE)\n'
              'def other():\n    return __import__("handgrad.cli")\n'
              'def unknown(name):\n    return importlib.import_module(name)\n')
    tree = ast.parse(source)
    found = sorted(parts for _, parts in _imported_modules(tree, PACKAGE / "io" / "example.py"))
    assert found == [("?",), ("cli",), ("estimators",)]


def test_a_module_belongs_to_its_most_specific_layer():
    assert layer_of(("io", "files")) == "io.files"
    assert layer_of(("io", "reader")) == "io"
    assert RANK["io.files"] < RANK["nn"] < RANK["io"]
    assert layer_of(("report", "metrics")) == "report.metrics" and layer_of(("report", "plots")) == "report"


def test_dir_of_the_package_lists_everything_it_exports_with_the_lazy_estimators():
    listed = dir(handgrad)
    assert set(handgrad.__all__) <= set(listed)
    assert {"MLPClassifier", "MLPRegressor", "fit", "History"} <= set(listed)
    assert listed == sorted(listed)
    for name in handgrad.__all__:
        getattr(handgrad, name)
