"""The public API's docstrings are numpydoc: their sections parse, match the signatures, and their examples run.

For every name in ``hg.__all__``, and the main methods of its classes (a layer's ``forward`` and
``backward``, an estimator's ``fit`` and ``predict``, an optimizer's ``step``, a callback's hooks), the
docstring must parse with ``numpydoc.docscrape`` without a warning, open with a one-line summary, list
under Parameters exactly the parameters of the signature (in order), have Returns (or Yields) when the
code returns a value, name under Raises every handgrad error the code raises itself, and, for the names
of ``__all__``, carry Examples.  The examples then run as doctests, so their printed output stays true.
"""

import ast
import doctest
import inspect
import textwrap
import warnings

import numpy as np
import pytest
from numpydoc.docscrape import NumpyDocString

import handgrad as hg
from handgrad import errors

# The methods documented with their own Parameters and Returns, where a public class defines them.
METHODS = ("forward", "backward", "fit", "predict", "predict_proba", "predict_log_proba", "step",
           "on_train_begin", "on_batch_end", "on_epoch_end", "on_train_end", "on_train_abort")
ERRORS = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _documented():
    """``{label: object}``: every public name, then the listed methods of its classes that handgrad defines."""
    objects = {name: getattr(hg, name) for name in hg.__all__}
    for name, obj in list(objects.items()):
        if isinstance(obj, type):
            for method in METHODS:
                function = getattr(obj, method, None)
                if inspect.isfunction(function) and function.__module__.startswith("handgrad"):
                    objects[f"{name}.{method}"] = function
    return objects


DOCUMENTED = _documented()


def _signature_names(obj):
    """The parameter names the docstring must list, as numpydoc spells them (``*args``), or None for none known."""
    if inspect.ismodule(obj):
        return None
    if isinstance(obj, type):
        if not any(cls.__module__.startswith("handgrad") and "__init__" in vars(cls) for cls in obj.__mro__):
            return []           # a constructor handgrad did not write (an exception's, object's): nothing to list
        function = obj.__init__
    else:
        function = obj
    names = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name in ("self", "cls"):
            continue
        prefix = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "")
        names.append(prefix + parameter.name)
    return names


def _body(obj):
    """The AST of ``obj``'s own code (a class's ``__init__``), nested functions left out; None without source."""
    function = obj.__dict__.get("__init__") if isinstance(obj, type) else obj
    if not inspect.isfunction(function):
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
    definition = tree.body[0]
    nodes, stack = [], list(definition.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _returns_value(nodes):
    return any(isinstance(node, ast.Return) and node.value is not None
               and not (isinstance(node.value, ast.Constant) and node.value.value is None) for node in nodes)


def _yields(nodes):
    return any(isinstance(node, (ast.Yield, ast.YieldFrom)) for node in nodes)


def _raised_errors(nodes):
    """The handgrad errors the code raises itself (``raise DataError(...)``), not through what it calls."""
    raised = set()
    for node in nodes:
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name in ERRORS:
                raised.add(name)
    return raised


def _parse(doc):
    """``doc`` parsed by numpydoc, a warning (an unknown or misspelt section) raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return NumpyDocString(doc)


def problems(obj, doc, *, examples=True):
    """What is missing or wrong in ``doc``, the docstring of ``obj``: a list of phrases, empty when all is well."""
    if not doc or not doc.strip():
        return ["no docstring"]
    try:
        parsed = _parse(doc)
    except Exception as error:      # numpydoc raises ValueError for a repeated section, warns for an unknown one
        return [f"numpydoc cannot parse it: {error}"]
    found = []
    if len(parsed["Summary"]) != 1:
        found.append(f"the summary is not one line: {parsed['Summary']}")
    expected = _signature_names(obj)
    if expected is not None:
        listed = [name.strip() for parameter in parsed["Parameters"] for name in parameter.name.split(",")]
        if listed != expected:
            found.append(f"Parameters lists {listed}, the signature has {expected}")
    nodes = _body(obj)
    if nodes is not None:
        if not isinstance(obj, type):
            if _yields(nodes) and not parsed["Yields"]:
                found.append("no Yields section")
            elif _returns_value(nodes) and not (parsed["Returns"] or parsed["Yields"]):
                found.append("no Returns section")
        listed = {name.strip() for entry in parsed["Raises"] for name in entry.type.split(",")}
        listed = {name.rsplit(".", 1)[-1].strip("`~:") for name in listed}
        missing = _raised_errors(nodes) - listed
        if missing:
            found.append(f"Raises does not name {sorted(missing)}")
    if examples and ">>>" not in "\n".join(parsed["Examples"]):
        found.append("no Examples section with a >>> example")
    return found


@pytest.mark.parametrize("label", list(DOCUMENTED))
def test_every_public_name_and_main_method_has_complete_numpydoc_sections(label):
    obj = DOCUMENTED[label]
    found = problems(obj, inspect.getdoc(obj), examples="." not in label)
    assert not found, f"hg.{label}: " + "; ".join(found)


def _examples():
    """``{label: docstring}`` of every documented docstring with examples, each docstring once."""
    seen, found = set(), {}
    for label, obj in DOCUMENTED.items():
        doc = inspect.getdoc(obj) or ""
        if ">>>" in doc and doc not in seen:
            seen.add(doc)
            found[label] = doc
    return found


EXAMPLES = _examples()


@pytest.mark.parametrize("label", list(EXAMPLES))
def test_the_examples_of_every_docstring_run_and_print_what_they_show(label):
    test = doctest.DocTestParser().get_doctest(EXAMPLES[label], {"hg": hg, "np": np}, label, None, 0)
    report = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    with np.printoptions(legacy=False):
        result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def test_every_public_name_has_an_example_that_runs():
    # A docstring shared with another name (an inherited method's) counts once; every public name has its own.
    assert all(name in EXAMPLES for name in hg.__all__), sorted(set(hg.__all__) - set(EXAMPLES))


# -- the checks catch what they are for ---------------------------------------------

def _sample(values, scale=1.0):
    """Scale ``values``.

    Parameters
    ----------
    value : array
        The values.
    """
    if scale == 0:
        raise hg.DataError("scale must not be 0")
    return values * scale


def test_the_checks_report_a_missing_section_a_misnamed_parameter_and_an_unnamed_error():
    found = problems(_sample, inspect.getdoc(_sample))
    assert any("Parameters lists ['value'], the signature has ['values', 'scale']" in p for p in found)
    assert "no Returns section" in found
    assert "Raises does not name ['DataError']" in found
    assert "no Examples section with a >>> example" in found


def test_the_checks_report_a_misspelt_section_and_a_summary_over_two_lines():
    doc = "Scale the values\nby a factor.\n\nParamters\n---------\nvalues : array\n"
    found = problems(_sample, doc)
    assert len(found) == 1 and "cannot parse" in found[0]
    assert "the summary is not one line" in problems(_sample, doc.replace("Paramters\n---------", "Notes\n-----"))[0]


def test_the_checks_pass_a_complete_docstring():
    doc = """Scale the values.

    Parameters
    ----------
    values : array
        The values.
    scale : float, default 1.0
        The factor.

    Returns
    -------
    array
        ``values * scale``.

    Raises
    ------
    DataError
        ``scale`` is 0.

    Examples
    --------
    >>> float(np.sum(np.ones(3) * 2.0))
    6.0
    """
    assert problems(_sample, inspect.cleandoc(doc)) == []


def test_a_wrong_printed_output_fails_its_doctest():
    test = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "sample", None, 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    assert runner.run(test, out=lambda text: None).failed == 1
