"""The README and docs/cli.md say what the code does: their examples run, their tables are generated."""

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
