"""``handgrad derive``: print the derivation of one concrete network, optionally with a gradient check.

The network is the one ``handgrad train`` would train with the same flags, or
the one a model file holds.  It cannot drift from ``train``: the data and
model flags (with ``--l2`` and ``--seed``) are added by ``train``'s own
functions (:func:`handgrad.cli.train.add_data_flags` and its siblings), the settings come from the same preset
merge (:func:`handgrad.cli.settings.from_flags`), and the model is built by
the function ``train`` builds it with (:func:`handgrad.cli.settings.build_model`,
``--dropout`` and ``--batch-norm`` included).  The text itself comes from the
pieces' declarations (:func:`handgrad.derive`).
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import handgrad as hg
from handgrad.cli import console, train
from handgrad.cli import settings as S
from handgrad.cli.common import check_writable, columns_not_read, in_model_order, model_features, write_text
from handgrad.cli.unused_flags import warn_unused
from handgrad.derivations.derive import FORMATS, document, render
from handgrad.errors import HandgradError

EXAMPLES = """\
examples:
  handgrad derive                                   the digits preset's network, 64-128-10 relu
  handgrad derive --hidden 32 --activation tanh --loss softmax-bce
  handgrad derive --dropout 0.2 --batch-norm --activation gelu
  handgrad derive --dataset mnist --data-dir ../shared/data --check
  handgrad derive --model handgrad-out/model.npz --format markdown --out notes.md

For each layer in order: the forward equation with the shapes for a batch of n
rows, the backward equations for each parameter and for its input, and the seed
documents they come from; then the loss's gradient on the logits and the L2
term.  --check measures each gradient against central differences in float64 on
a few rows of the dataset (a sample of entries per array: two forward passes
per entry) and exits with 1 if any error reaches the tolerance (1e-6).
"""

def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "derive", parents=parents, help="print the derivation of a network, with shapes and seeds",
        description="Print the derivation of one network: every layer's forward and backward equations with "
                    "their shapes, the loss's gradient and the L2 term; optionally check each gradient.",
        epilog=EXAMPLES, formatter_class=console.HelpFormatter)
    train.add_data_flags(p)
    network = train.add_model_flags(p)
    objective = p.add_argument_group("objective and initialisation")
    train.add_l2_flag(objective)
    train.add_seed_flag(objective)
    network.append("seed")
    t = S.argument_type
    source = p.add_argument_group("a saved network")
    source.add_argument("--model", metavar="FILE", help="derive this model file's network instead "
                                                        f"(not with {', '.join(_flag(d) for d in network)})")
    check = p.add_argument_group("check")
    check.add_argument("--check", action="store_true", help="measure each gradient against central differences")
    check.add_argument("--check-rows", type=t(S.positive_int), metavar="N",
                       help=f"rows of the training data to check on (default {CHECK_ROWS})")
    check.add_argument("--check-entries", type=t(S.non_negative_int), metavar="N",
                       help=f"entries sampled per array (default {CHECK_ENTRIES}; 0: every entry)")
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="text", help="plain text, or Markdown with LaTeX")
    out.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of standard output")
    p.set_defaults(run=run_derive, network_flags=network)


CHECK_ROWS, CHECK_ENTRIES = 4, 20          # --check-rows and --check-entries when not given


def _flag(dest):
    return "--" + dest.replace("_", "-")


def run_derive(args):
    out = Path(args.out) if args.out else None
    if out is not None:
        check_writable(out, "--out")
    if args.model:
        given = [_flag(dest) for dest in args.network_flags if getattr(args, dest, None) is not None]
        if given:
            raise HandgradError(f"{', '.join(given)} describe{'s' if len(given) == 1 else ''} a network to build, "
                                f"but --model names a built one; drop {'it' if len(given) == 1 else 'them'} "
                                f"or --model")
        warn_unused("derive", args)
        model, loss, l2, rows = _from_file(args)
    else:
        model, loss, l2, rows = network_from_flags(args, _check_rows(args) if args.check else None)
    entries = CHECK_ENTRIES if args.check_entries is None else args.check_entries
    doc = document(model, loss, l2=l2, check=rows and rows.data, entries=entries, rows=rows and rows.label)
    text = render(doc, args.format)
    if out is None:
        sys.stdout.write(text)
    else:
        write_text(out, text)
        print(f"derivation written to {out}" + ("" if doc.passed is None else
                                                f"; gradient check {'passed' if doc.passed else 'FAILED'}"))
    return 1 if doc.passed is False else 0


def network_from_flags(args, rows=None):
    """The network ``handgrad train`` would start with these flags, its loss and L2, and ``rows`` rows.

    ``rows`` (a count, or None for none) are the first rows of the training
    split, preprocessed as ``train`` preprocesses them: ``(X, y)`` in
    ``rows.data``, with a description in ``rows.label``.
    """
    from handgrad.data.loaders import load_dataset
    from handgrad.data.preprocessing import Preprocessor

    settings = S.from_flags(args)
    warn_unused(args.command, args, settings)          # derive's flags, or diagnose's
    dtype = np.dtype(settings["dtype"]).type
    loss = S.build_loss(settings)
    # As train's _prepare loads it, without preprocessing every row: only the checked rows are used,
    # and only the training split is read (and fetched) for MNIST-style data.
    dataset = load_dataset(settings["dataset"], data_dir=settings["data_dir"], target=settings["target"],
                           test_fraction=settings["test_fraction"], parts=("train",), task=loss.task,
                           drop=settings["drop"])
    model = S.build_model(settings, dataset.n_features, dataset.n_outputs, dtype)
    if rows is None:
        return model, loss, settings["l2"], None
    preprocessor = Preprocessor.fit(dataset.X_train, dataset.kind)
    X = preprocessor.transform(dataset.X_train[:rows], dtype=dtype)   # what training feeds it
    return model, loss, settings["l2"], SimpleNamespace(
        data=(X, dataset.y_train[:rows]),
        label=f"the first {len(X)} training rows of {dataset.name}, preprocessed as train does")


def _check_rows(args):
    return CHECK_ROWS if args.check_rows is None else args.check_rows


def _from_file(args):
    """A model file's network, loss and L2 (``--l2`` overrides the run's), and rows to check on."""
    from handgrad.io.modelfile import load_model

    loaded = load_model(args.model)
    saved = loaded.settings if isinstance(loaded.settings, dict) else {}
    if args.l2 is not None:
        l2 = args.l2
    else:
        try:
            l2 = S.non_negative_float(saved.get("l2", 0.0))
        except HandgradError as exc:
            raise HandgradError(f"the model file's l2 {exc}; pass --l2") from None
    loss = loaded.loss or hg.SoftmaxCrossEntropy()
    rows = _file_rows(args, loaded, saved) if args.check else None
    return loaded.model, loss, l2, rows


def _file_rows(args, loaded, saved):
    """Rows of ``--dataset`` (else the run's own dataset) through the model's preprocessing; random rows without one."""
    from handgrad.data.loaders import load_dataset

    spec = args.dataset or (saved.get("dataset") if isinstance(saved.get("dataset"), str) else None)
    k = _check_rows(args)
    loss = loaded.loss or hg.SoftmaxCrossEntropy()
    if spec is None:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((k, loaded.model.n_features))
        y = loss.task.example_targets(rng, k, loaded.model.n_outputs)[0][0]
        return SimpleNamespace(data=(X, y), label=f"{k} random rows (the model file names no dataset)")
    same = args.dataset is None
    data_dir = args.data_dir or (saved.get("data_dir") if same and isinstance(saved.get("data_dir"), str) else None)
    target = args.target or (saved.get("target") if same and isinstance(saved.get("target"), str) else None)
    fraction = saved.get("test_fraction") if same else None
    try:
        fraction = 0.2 if fraction is None else S.fraction(fraction)
    except HandgradError:
        fraction = 0.2
    if not loss.task.label_column and target is None and str(spec).lower().endswith(".csv"):
        target = ",".join(map(str, loaded.classes))     # the model's outputs are named after its target columns
    dataset = load_dataset(spec, data_dir=data_dir, target=target, test_fraction=fraction, parts=("train",),
                           task=loss.task, drop=columns_not_read(spec, loaded, target))
    source = f"{spec} (training split)"
    raw = in_model_order(loaded, dataset, dataset.X_train[:k], source)
    X = model_features(loaded, raw, source, images=dataset.kind == "image").astype(np.float64)
    y = loss.task.model_targets(dataset.y_train[:k], dataset.classes.tolist(), loaded.classes, source)
    return SimpleNamespace(data=(X, y), label=f"the first {len(X)} training rows of {dataset.name}")
