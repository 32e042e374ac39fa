"""``handgrad diagnose FILE.py``: name the mistake in a hand-written gradient.

``FILE.py`` defines ``gradients(params, X, y)``; the network is the one
``handgrad derive`` prints for the same flags (``train``'s own data and model
flags, ``--l2`` and ``--seed``, built by the same function,
:func:`handgrad.cli.derive.network_from_flags`), and the batches are drawn
from the first rows of the dataset's training split, preprocessed as
``train`` does.  The report is :func:`handgrad.diagnose`'s.  Exit codes: 0
when every gradient returned is right, 1 when a mistake is found, 2 on bad
input (one line, as every command).
"""

import importlib.util
import traceback
from pathlib import Path

import handgrad as hg
from handgrad.cli import console, derive, train
from handgrad.derivations.diagnose import LAYOUTS
from handgrad.errors import HandgradError

ROWS = 200      # training rows the random batches are drawn from

EXAMPLES = """\
examples:
  handgrad diagnose my_gradients.py                         the digits preset's 64-128-10 relu
  handgrad diagnose seed003.py --hidden 16 --layout columns samples as columns, W out × in
  handgrad diagnose mine.py --hidden 8 --activation sigmoid --loss softmax-bce --l2 0.01

FILE.py defines gradients(params, X, y): params maps W1, b1, W2, ... (the names
'handgrad derive' prints) to arrays, and it returns a dict of the gradients of
the whole objective (loss + (λ/2) Σ‖W‖²) for that batch, for some or all of
them.  Each is checked against handgrad's own gradient on random batches of the
training data; a wrong one is named: scale, sign, transpose, missing-l2,
missing-target-term, activation-derivative, ... (docs/diagnose.md).  Exit code:
0 all right, 1 a mistake found, 2 bad input.
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "diagnose", parents=parents, help="name the mistake in a hand-written gradient",
        description="Call FILE.py's gradients(params, X, y) on random batches, compare each gradient it returns "
                    "with handgrad's, and name the mistake in each wrong one.",
        epilog=EXAMPLES, formatter_class=console.HelpFormatter)
    p.add_argument("file", metavar="FILE.py", help="a Python file defining gradients(params, X, y)")
    train.add_data_flags(p)                 # the flags derive takes, defined once by train
    train.add_model_flags(p)
    objective = p.add_argument_group("objective and initialisation")
    train.add_l2_flag(objective)
    train.add_seed_flag(objective)
    p.add_argument_group("diagnosis").add_argument(
        "--layout", choices=LAYOUTS, default="rows",
        help="rows: X is n×d, W in×out, b (out,) (handgrad's); columns: X is d×n, W out×in, b out×1 (the seeds')")
    p.set_defaults(run=run_diagnose)


def run_diagnose(args):
    gradients = load_gradients(args.file)
    model, loss, l2, rows = derive.network_from_flags(args, ROWS)
    X, y = rows.data
    report = hg.diagnose(model, loss, X, y, gradients, l2=l2, layout=args.layout,
                         seed=args.seed if args.seed is not None else 0)
    print(report)
    return 0 if report.passed else 1


def load_gradients(path):
    """The function ``gradients`` that the Python file at ``path`` defines; one-line errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise HandgradError(f"{path} is not a file; pass the Python file that defines gradients(params, X, y)")
    spec = importlib.util.spec_from_file_location(f"_handgrad_diagnosed_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:      # the learner's file: any failure is bad input, told in one line
        line = getattr(exc, "lineno", None) or _line_in(exc, path)
        where = f" (line {line})" if line else ""
        raise HandgradError(f"{path} could not be run{where}: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split()) or '(no message)'}; fix it and run again") from None
    gradients = getattr(module, "gradients", None)
    if not callable(gradients):
        raise HandgradError(f"{path} defines no function gradients(params, X, y); define one that returns a dict "
                            "of gradients by parameter name (W1, b1, ...)")
    return gradients


def _line_in(exc, path):
    """The line of ``path`` where ``exc`` was raised, if it passed through that file."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if Path(frame.filename).resolve() == path.resolve()]
    return lines[-1] if lines else None
