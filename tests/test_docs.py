"""The README and docs/cli.md say what the code does: their examples run, their tables are generated."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()


def _blocks(text, *languages):
    """The contents of the fenced code blocks of ``text`` marked with one of ``languages`` ("" for none)."""
    blocks, current, language = [], None, None
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in languages:
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _command_lines(text):
    """Every ``handgrad ...`` line inside a shell code block, comment stripped."""
    lines = []
    for block in _blocks(text, "bash", ""):
        for line in block.splitlines():
            line = line.split(" && ")[-1].strip()
            if line.startswith("handgrad "):
                lines.append(shlex.split(line, comments=True))
    return lines


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_blocks(README, "python"))))
def test_every_python_example_in_the_readme_runs_in_an_empty_folder(tmp_path, index):
    code = _blocks(README, "python")[index]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_readme_has_python_examples_and_they_define_what_they_use():
    blocks = _blocks(README, "python")
    assert blocks and all("import handgrad" in block for block in blocks)


def test_the_presets_table_in_docs_is_the_one_presets_py_generates():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import presets_table
    finally:
        sys.path.remove(str(ROOT / "docs"))
    from handgrad.cli.presets import markdown_table

    assert presets_table.table_in(CLI_DOC) == markdown_table()


@pytest.mark.parametrize("text", [README, CLI_DOC], ids=["README", "cli.md"])
def test_every_command_in_the_docs_is_accepted_by_the_parser(text):
    from handgrad.cli import build_parser

    commands = _command_lines(text)
    assert len(commands) >= 5
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])
        assert args.command in ("train", "evaluate", "predict", "check", "derive", "diagnose", "export"), argv


def test_the_docs_name_the_machine_their_numbers_come_from():
    # The project's machines have been 2-core KVM guests reporting an Intel Xeon or an AMD EPYC.
    for text in (README, CLI_DOC):
        assert re.search(r"2-core (Intel Xeon|AMD EPYC) KVM guest", " ".join(text.split()))


# -- what the documented commands write -------------------------------------------------

DOCS = {"README": README, "cli.md": CLI_DOC, **{path.name: path.read_text() for path in (ROOT / "docs").glob("*.md")
                                                   if path.name != "cli.md"}}
OUTPUT_FLAGS = ("--out", "--plots", "--log", "--checkpoint", "--export", "--json")


def _ignored_roots():
    """The folders at the repository's root that .gitignore ignores whole (``/runs/``)."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return [line.strip("/") for line in lines if line.startswith("/") and line.endswith("/")]


def _shell_lines(text):
    """Every command line of ``text``'s shell code blocks (fenced without a language, or bash, or indented)."""
    lines = [line for block in _blocks(text, "bash", "") for line in block.splitlines()]
    lines += [line[4:] for line in text.splitlines() if line.startswith("    ") and " python " in f" {line.strip()} "]
    return [line.split(" && ")[-1].strip() for line in lines if line.strip()]


def _written_paths(line):
    """The files and folders a documented command line writes, as written in it."""
    argv = shlex.split(line, comments=True)
    while argv and "=" in argv[0]:                  # PYTHONPATH=src python ...
        argv = argv[1:]
    paths = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in OUTPUT_FLAGS]
    if argv[:1] == ["handgrad"] and argv[1] == "train" and "--out" not in argv:
        paths.append("handgrad-out/model.npz")
    if argv[:2] == ["python", "docs/tables.py"]:
        paths.append(argv[2] if len(argv) > 2 else "tables")
    if argv[:2] == ["python", "-c"]:
        paths += re.findall(r"np\.save(?:txt|z)\('([^']+)'", argv[2])
    return paths


@pytest.mark.parametrize("name", list(DOCS))
def test_the_documented_commands_write_only_where_git_ignores(name):
    roots = _ignored_roots()
    written = [(line, path) for line in _shell_lines(DOCS[name]) for path in _written_paths(line)]
    for line, path in written:
        assert Path(path).parts[0] in roots, f"{name}: {line!r} writes {path}, which git does not ignore"
    if name in ("README", "cli.md"):
        assert written


@pytest.mark.parametrize("name", ["README", "cli.md"])
def test_the_tables_the_docs_train_on_are_made_before_they_are_used(name):
    lines = _shell_lines(DOCS[name])
    made = next(i for i, line in enumerate(lines) if line.startswith("python docs/tables.py"))
    used = [i for i, line in enumerate(lines) if "tables/" in line and not line.startswith("python docs/tables.py")]
    assert used and made < min(used)


def test_the_cli_page_lists_every_command():
    from handgrad.cli import build_parser

    listed = [line.split()[1] for line in _blocks(CLI_DOC, "text")[0].splitlines()]
    subcommands = next(action for action in build_parser()._actions if action.dest == "command").choices
    assert listed == list(subcommands)
    assert all(len(line) <= 100 for line in _blocks(CLI_DOC, "text")[0].splitlines())


# -- numbers the docs quote, against their sources ------------------------------------------

def _result(name):
    return json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())


def _and(items):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _flat(text):
    return " ".join(text.split())


def test_the_mnist_preset_numbers_are_those_of_its_recorded_runs():
    runs = _result("mnist-preset")["results"]
    accuracy = [r["final_test_accuracy"] for r in runs]
    seconds = [r["seconds"] for r in runs]
    to_985 = [r["time_to"]["0.985"] for r in runs]
    assert [r["seed"] for r in runs] == [0, 1, 2, 3, 4]
    span = f"{min(accuracy):.4f}–{max(accuracy):.4f}"
    training = f"{min(seconds):.1f}–{max(seconds):.1f} s of training"
    readme, cli = _flat(README), _flat(CLI_DOC)
    assert f"{sum(accuracy) / len(accuracy):.4f} ({span})" in readme and training in readme
    assert f"98.5% passed after {min(to_985):.0f}–{max(to_985):.0f} s" in readme
    assert (f"0.9870 to 0.9888 test accuracy over seeds 0-4 (mean {sum(accuracy) / len(accuracy):.4f}) after "
            f"{min(seconds):.1f} to {max(seconds):.1f} s of training") in cli.replace(f"{min(accuracy):.4f} to "
                                                                                     f"{max(accuracy):.4f}",
                                                                                     "0.9870 to 0.9888")
    assert f"{span} over seeds 0–4 after {min(seconds):.1f} to {max(seconds):.1f} s" in cli
    # every range of MNIST accuracies quoted is this one: no number of an earlier preset survives
    for text in (readme, cli):
        for quoted in re.findall(r"0\.98\d\d[–-]0\.98\d\d|0\.98\d\d to 0\.98\d\d", text):
            assert re.split(r"[–-]| to ", quoted) == [f"{min(accuracy):.4f}", f"{max(accuracy):.4f}"], quoted


def test_the_best_preset_numbers_are_those_of_its_recorded_runs():
    runs = _result("mnist-flops")["results"]
    assert [r["seed"] for r in runs] == [0, 1, 2, 3, 4]
    percent = [f"{100 * r['final_test_accuracy']:.2f}%" for r in runs]
    epochs = [str(r["reached"]["0.990"]["epoch"]) for r in runs]
    tflop = [r["reached"]["0.990"]["tflop"] for r in runs]
    seconds = [r["reached"]["0.990"]["seconds"] for r in runs]
    tflop_span, seconds_span = f"{min(tflop):.2f}–{max(tflop):.2f} TFLOP", f"{min(seconds):.0f}–{max(seconds):.0f} s"
    readme, cli = _flat(README), _flat(CLI_DOC).replace("-", "–")
    assert (f"{', '.join(percent)} test accuracy (seeds 0-4) after 15 epochs; 99.0% first reached after epochs "
            f"{', '.join(epochs)}: **{tflop_span}**") in readme and seconds_span in readme
    assert f"**{_and(percent)}**" in cli and f"{_and(epochs)}, i.e. **{tflop_span}**" in cli
    assert f"after {seconds_span} of training" in cli.replace("– s", " s")
    for name, text in (("best-fashion-mnist", "after 30 epochs"), ("fashion-mnist-preset", None)):
        fashion = [f"{100 * r['final_test_accuracy']:.2f}%" for r in _result(name)["results"]]
        low, high = min(fashion), max(fashion)
        if text:
            assert f"{', '.join(fashion)} test accuracy (seeds 0-4) {text}" in readme
            assert f"**{_and(fashion)}**" in cli
        else:
            assert f"{low[:-1]}–{high}" in cli and f"{low[:-1]}–{high}" in readme


def test_the_check_sections_counts_are_the_presets():
    from handgrad.cli.check import DEFAULT_ENTRIES, preset_network

    widths, parameters = preset_network("mnist")
    sizes = [size for n_in, n_out in zip(widths, widths[1:]) for size in (n_in * n_out, n_out)]
    sampled = sum(min(size, DEFAULT_ENTRIES) for size in sizes)
    cli = _flat(CLI_DOC)
    assert f"{sampled:,} of the MNIST preset's {parameters:,} parameters" in cli
    assert f"the {preset_network('digits')[1]:,} of the digits preset's model" in cli
    assert f"the MNIST preset's {parameters:,} took" in cli


def test_the_estimator_comparison_table_is_the_recorded_one():
    text = (ROOT / "docs" / "estimator.md").read_text()
    table = [line for line in text.split("\n| data set |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]]
    recorded = (ROOT / "benchmarks" / "results" / "sklearn_compare.md").read_text().splitlines()
    assert table and all(line in recorded for line in table)


def test_the_warnings_table_names_every_rule_for_flags_without_effect():
    from handgrad.cli.unused_flags import RULES

    section = CLI_DOC.split("## Warnings", 1)[1].split("\n## ", 1)[0]
    for rule in RULES:
        row = next((line for line in section.splitlines() if f"`--{rule.flag.replace('_', '-')}`" in line), None)
        assert row is not None, rule.flag
        assert all(command in row.split("|")[-2] for command in rule.commands), row


# -- prose ------------------------------------------------------------------------------

def _prose(text):
    """``text`` without its code: fenced and indented blocks, and inline code spans."""
    kept = [line for line in text.split("```")[::2]]
    lines = [line for part in kept for line in part.splitlines() if not line.startswith("    ")]
    return re.sub(r"`[^`]*`", "", "\n".join(lines))


@pytest.mark.parametrize("name", list(DOCS))
def test_every_sentence_of_the_docs_ends_before_the_next_begins(name):
    glued = re.findall(r"\w+[.!?][A-Z][a-z]+", _prose(DOCS[name]))
    assert not [g for g in glued if not re.match(r"(e\.g|i\.e|hg|np)\.", g)], glued


def test_no_docstring_of_the_public_api_says_a_sentence_twice():
    import inspect

    import handgrad as hg

    for name in hg.__all__:
        doc = inspect.getdoc(getattr(hg, name)) or ""
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())) if len(s.strip()) > 30]
        repeated = {s for s in sentences if sentences.count(s) > 1}
        assert not repeated, f"hg.{name}: {repeated}"
