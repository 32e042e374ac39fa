"""``hg.derive`` and ``handgrad derive``: the derivation of one concrete network, from its pieces' declarations."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli import main
from handgrad.derivations.derive import document
from handgrad.derivations.notation import fill, to_latex, to_text
from handgrad.errors import HandgradError
from handgrad.registry import LAYERS, LOSSES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "derivations.md"


def _net(*hidden, activation="tanh", n_in=64, n_out=10):
    return hg.mlp(n_in, list(hidden), n_out, activation=activation, dtype=np.float64, seed=0)


def _block(text, header):
    """The lines of the part whose header starts with ``header``, up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def _row(block, label):
    return next(line for line in block if line.split()[:1] == [label])


def _rows(digits, n=4):
    X, y = digits
    return X[:n], y[:n]


# -- the text --------------------------------------------------------------------------

def test_each_layer_is_named_in_order_with_its_forward_and_backward_shapes():
    text = hg.derive(_net(32), hg.SoftmaxCrossEntropy())
    headers = [line for line in text.splitlines() if re.match(r"(layer \d+|loss|objective): ", line)]
    assert [h.split("  ")[0] for h in headers] == [
        "layer 1: Dense(64, 32)", "layer 2: Tanh()", "layer 3: Dense(32, 10)",
        "loss: SoftmaxCrossEntropy(reduction='mean')", "objective: loss + L2"]
    first = _block(text, "layer 1:")
    assert "Z = X W + b" in _row(first, "forward") and "n×64 · 64×32 + 32 → n×32" in _row(first, "forward")
    assert "∂J/∂W = Xᵀ G" in _row(first, "W1") and "64×n · n×32 → 64×32" in _row(first, "W1")
    assert "∂J/∂b = Σ_rows G" in _row(first, "b1") and "→ 32" in _row(first, "b1")
    assert "not computed: the input of layer 1 is the data" in _row(first, "input")
    tanh = _block(text, "layer 2:")
    assert "A = tanh(Z)" in _row(tanh, "forward") and "n×32 → n×32" in _row(tanh, "forward")
    assert "∂J/∂Z = G ⊙ (1 − A²)" in _row(tanh, "input")
    last = _block(text, "layer 3:")
    assert "n×32 · 32×10 + 10 → n×10" in _row(last, "forward")
    assert "32×n · n×10 → 32×10" in _row(last, "W2")
    assert "∂J/∂X = G Wᵀ" in _row(last, "input") and "n×10 · 10×32 → n×32" in _row(last, "input")


def test_a_deep_network_numbers_its_parameters_and_tracks_widths():
    text = hg.derive(_net(50, 20, activation="relu", n_in=7, n_out=3), hg.SoftmaxCrossEntropy())
    assert "n×7 · 7×50 + 50 → n×50" in text and "n×50 · 50×20 + 20 → n×20" in text
    assert "n×20 · 20×3 + 3 → n×3" in text
    assert [line.split()[0] for line in text.splitlines() if re.match(r"  [Wb]\d ", line)] == \
        ["W1", "b1", "W2", "b2", "W3", "b3"]


@pytest.mark.parametrize("activation, seeds", [("sigmoid", "[seed 000]"), ("tanh", "[seed 004]"),
                                               ("relu", "[seed 003]"), ("identity", None)])
def test_each_activation_names_its_seed(activation, seeds):
    text = hg.derive(_net(8, activation=activation), hg.SoftmaxCrossEntropy())
    header = _block(text, "layer 2:")[0]
    assert (seeds in header) if seeds else "seed" not in header
    assert "docs/derivations.md#activations" in header
    assert "[seeds 000, 001, 002, 003, 004]" in _block(text, "layer 1:")[0]


def test_the_loss_gradient_with_respect_to_the_logits_and_its_seeds():
    text = hg.derive(_net(8), hg.SoftmaxCrossEntropy())
    loss = _block(text, "loss:")
    assert "[seeds 000, 001, 003, 004]" in loss[0]
    assert "∂L/∂Z = κ (P ⊙ rowsum(Y) − Y)" in _row(loss, "logits") and "n×10" in _row(loss, "logits")
    assert "L = −κ Σ_r Σ_k Y_rk log P_rk" in _row(loss, "forward")
    assert "κ = 1/n (reduction 'mean')" in text
    text = hg.derive(_net(8), hg.SoftmaxBinaryCrossEntropy(reduction="sum"))
    loss = _block(text, "loss:")
    assert "[seed 002]" in loss[0] and "softmax-binary-cross-entropy-seed-002" in loss[0]
    assert "∂L/∂Z_rj = κ (K P_rj − Y_rj − Σ_(k≠j) (1 − Y_rk) P_rj/(1 − P_rk))" in _row(loss, "logits")
    assert "κ = 1 (reduction 'sum')" in text


def test_the_l2_term_is_printed_exactly_when_l2_is_positive():
    without = hg.derive(_net(8, 6), hg.SoftmaxCrossEntropy())
    assert "(λ/2)" not in without and "no L2 term (λ = 0)" in without and "λ W" not in without
    with_l2 = hg.derive(_net(8, 6), hg.SoftmaxCrossEntropy(), l2=1e-3)
    objective = _block(with_l2, "objective:")
    assert "J = L + (λ/2) Σ_l ‖W_l‖²" in _row(objective, "forward")
    assert "λ = 0.001" in _row(objective, "forward")
    assert "∂J/∂W_l = ∂L/∂W_l + λ W_l" in _row(objective, "W1,")
    assert "W1, W2, W3" in "".join(objective) and "b1" not in "".join(objective)
    assert "[seed 000]" in objective[0]


def test_the_seed_documents_are_listed_by_file():
    text = hg.derive(_net(8, activation="sigmoid"), hg.SoftmaxBinaryCrossEntropy())
    for seed, name in [("000", "000_eda4069e158943ea.txt"), ("002", "002_504966d63efcce89.txt")]:
        assert re.search(rf"^  {seed}  {re.escape(name)}  ", text, re.M)


def test_markdown_writes_the_same_in_latex():
    md = hg.derive(_net(32), hg.SoftmaxCrossEntropy(), l2=1e-4, format="markdown")
    assert md.startswith("# Derivation of 64-32-10 tanh, loss cross-entropy, L2 λ = 0.0001\n")
    assert "## Layer 1: `Dense(64, 32)`" in md and "## Layer 2: `Tanh()`" in md and "## Loss: `Softmax" in md
    assert "| forward | $Z = X W + b$ | $n\\times 64 \\cdot 64\\times 32 + 32 \\to n\\times 32$ |" in md
    assert ("| `W1` | $\\partial J/\\partial W = X^{\\top} G$ | "
            "$64\\times n \\cdot n\\times 32 \\to 64\\times 32$ |") in md
    assert "$\\partial J/\\partial b = \\sum_{\\text{rows}} G$" in md
    assert "$\\partial J/\\partial Z = G \\odot(1 - A^{2})$" in md
    assert "$\\partial L/\\partial Z = \\kappa(P \\odot \\operatorname{rowsum}(Y) - Y)$" in md
    assert "$J = L + (\\lambda/2) \\sum_{l} \\lVert W_l\\rVert^{2}$" in md
    assert "Seeds 000, 001, 002, 003, 004; derived in [docs/derivations.md](docs/derivations.md#dense)." in md
    assert "Seed 004; derived in" in md
    assert "\\lambda" not in hg.derive(_net(32), hg.SoftmaxCrossEntropy(), format="markdown")


# -- user-defined pieces -----------------------------------------------------------------

def test_a_user_activation_without_a_declaration_prints_with_a_note(digits):
    class Swish(hg.Activation):
        """``A = Z σ(Z)``."""

        def forward(self, Z, out=None):
            self._Z = Z.copy()
            return np.multiply(Z, 1 / (1 + np.exp(-Z)), out=out)

        def backward(self, G, out=None):
            s = 1 / (1 + np.exp(-self._Z))
            return np.multiply(G, s * (1 + self._Z * (1 - s)), out=out)

    model = hg.Sequential(hg.Dense(64, 12, dtype=np.float64), Swish(), hg.Dense(12, 10, dtype=np.float64),
                          seed=0)
    for text in (hg.derive(model, hg.SoftmaxCrossEntropy()),
                 hg.derive(model, hg.SoftmaxCrossEntropy(), format="markdown")):
        assert "no derivation declared; see its docstring" in text
    block = _block(hg.derive(model, hg.SoftmaxCrossEntropy()), "layer 2: Swish()")
    assert len(block) == 2 and "n×12 → n×12" in block[1]
    checked = _block(hg.derive(model, hg.SoftmaxCrossEntropy(), check=_rows(digits)), "layer 2: Swish()")
    assert "input" in checked[-1] and "worst of" in checked[-1]


def test_a_user_layer_declares_its_own_derivation_with_placeholders():
    class Scaled(hg.Activation):
        """``A = s Z``."""

        derivation = hg.Derivation(forward="A = s Z", backward={"input": "∂J/∂Z = s G"},
                                   shapes={"input": "n×$out"}, note="s = $scale")

        def __init__(self, scale=2.0):
            self.scale = scale

        def forward(self, Z, out=None):
            return np.multiply(Z, self.scale, out=out)

        def backward(self, G, out=None):
            return np.multiply(G, self.scale, out=out)

    model = hg.Sequential(hg.Dense(5, 4, dtype=np.float64), Scaled(0.5), hg.Dense(4, 3, dtype=np.float64))
    block = _block(hg.derive(model, hg.SoftmaxCrossEntropy()), "layer 2: Scaled(scale=0.5)")
    assert "A = s Z" in _row(block, "forward") and "∂J/∂Z = s G" in _row(block, "input")
    assert "n×4 → n×4" in _row(block, "input") and "note: s = 0.5" in block[-1]


# -- the check -----------------------------------------------------------------------------

def test_check_prints_a_measured_error_below_the_tolerance_beside_each_gradient(digits):
    model = _net(16, 12, activation="sigmoid")
    doc = document(model, hg.SoftmaxCrossEntropy(), l2=1e-3, check=_rows(digits))
    measured = {row.label: row.measured for part in doc.parts for row in part.rows if row.measured}
    assert {"W1", "b1", "W2", "b2", "W3", "b3", "logits"} <= set(measured)
    assert all(m.error < 1e-6 for m in measured.values()) and doc.passed
    text = hg.derive(model, hg.SoftmaxCrossEntropy(), l2=1e-3, check=_rows(digits))
    for label in ("W1", "b1", "W2", "b2", "W3", "b3"):
        error = float(re.search(r"(\d\.\de[-+]\d\d) \(worst of", _row(text.splitlines(), label)).group(1))
        assert error < 1e-6
    assert "(worst of 20 sampled entries of 1024)" in _row(text.splitlines(), "W1")
    assert "(worst of all 10 entries)" in _row(text.splitlines(), "b3")
    assert "Gradient check passed" in text and "<< over" not in text
    every = hg.derive(model, hg.SoftmaxCrossEntropy(), check=_rows(digits), entries=0)
    assert "(worst of all 1024 entries)" in _row(every.splitlines(), "W1")


def test_check_of_a_float32_model_runs_on_a_float64_copy_and_leaves_the_model_alone(digits):
    model = hg.mlp(64, [8], 10, seed=0)
    before = model.get_weights()
    doc = document(model, hg.SoftmaxBinaryCrossEntropy(), check=_rows(digits))
    assert doc.passed and np.array_equal(model.get_weights(), before)


def test_a_deliberately_broken_user_layer_shows_a_large_error(digits):
    class BrokenTanh(hg.Tanh):
        """Tanh whose backward forgets the square: ``G ⊙ (1 − A)``."""

        def backward(self, G, out=None):
            return np.multiply(G, 1 - self._A, out=out)

    model = hg.Sequential(hg.Dense(64, 12, dtype=np.float64), BrokenTanh(), hg.Dense(12, 10, dtype=np.float64),
                          seed=0)
    doc = document(model, hg.SoftmaxCrossEntropy(), check=_rows(digits))
    measured = {row.label: row.measured.error for part in doc.parts for row in part.rows if row.measured}
    assert measured["W1"] > 1e-2 and measured["b1"] > 1e-2 and doc.passed is False
    assert measured["W2"] < 1e-6 and measured["logits"] < 1e-6
    text = hg.derive(model, hg.SoftmaxCrossEntropy(), check=_rows(digits))
    block = _block(text, "layer 2: BrokenTanh()")
    assert "∂J/∂Z = G ⊙ (1 − A²)" in _row(block, "input") and "<< over the tolerance" in _row(block, "input")
    assert "Gradient check FAILED" in text


def test_check_rows_must_be_a_pair():
    with pytest.raises(HandgradError, match="pair"):
        hg.derive(_net(4), hg.SoftmaxCrossEntropy(), check=np.zeros((2, 64)))


@pytest.mark.parametrize("kwargs, message", [
    ({"format": "html"}, "unknown format 'html'"), ({"l2": -1.0}, "l2 must be"), ({"entries": -3}, "entries")])
def test_bad_arguments_raise_one_line(kwargs, message):
    with pytest.raises(HandgradError, match=message):
        hg.derive(_net(4), hg.SoftmaxCrossEntropy(), **kwargs)
    with pytest.raises(HandgradError, match="Sequential"):
        hg.derive(hg.Dense(3, 2), hg.SoftmaxCrossEntropy())


# -- the declarations ------------------------------------------------------------------

def _anchors():
    headings = re.findall(r"^#+ (.+)$", DOCS.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_built_in_piece_declares_input_and_parameter_gradients_and_a_section_that_exists():
    from handgrad.derivations.derive import OBJECTIVE

    anchors = _anchors()
    pieces = [cls for cls in [*LAYERS, *LOSSES] if cls.__module__.startswith("handgrad.")]
    assert {"Dense", "ReLU", "Tanh", "Sigmoid", "Identity", "SoftmaxCrossEntropy"} <= {c.__name__ for c in pieces}
    for cls in pieces:
        declared = cls.derivation
        assert declared is not None, cls
        assert set(declared.backward) == {"input", *getattr(cls, "parameter_names", ())}, cls
        assert declared.section in anchors, (cls, declared.section)
    assert OBJECTIVE.section in anchors


def test_the_formula_syntax_renders_as_text_and_latex():
    cases = [("∂J/∂W = Xᵀ G", "∂J/∂W = Xᵀ G", r"\partial J/\partial W = X^{\top} G"),
             ("Σ_{rows} G", "Σ_rows G", r"\sum_{\text{rows}} G"),
             ("A = σ(Z) = 1/(1 + exp(−Z))", "A = σ(Z) = 1/(1 + exp(−Z))", r"A = \sigma(Z) = 1/(1 + \exp(-Z))"),
             ("X̂ = (X − μ)/√(σ² + ε)", "X̂ = (X − μ)/√(σ² + ε)",
              r"\hat{X} = (X - \mu)/\sqrt{\sigma^{2} + \varepsilon}"),
             ("e^{−Z} + W_{1}", "e^(−Z) + W₁", r"e^{-Z} + W_{1}"),
             ("Σ_{k≠j} Y_{rk}", "Σ_(k≠j) Y_rk", r"\sum_{k\neq j} Y_{rk}"),
             ("‖W‖²", "‖W‖²", r"\lVert W\rVert^{2}")]
    for formula, text, latex in cases:
        assert (to_text(formula), to_latex(formula)) == (text, latex)
    assert fill("n×$in · $W → $missing", {"in": 64, "W": (64, 32)}) == "n×64 · 64×32 → $missing"


# -- the command -----------------------------------------------------------------------

def test_the_command_prints_the_digits_preset_network(capsys):
    assert main(["derive"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Derivation of 64-128-10 relu, loss cross-entropy, L2 λ = 0.0001\n")
    assert "n×64 · 64×128 + 128 → n×128" in out and "layer 2: ReLU()  [seed 003]" in out


def test_the_command_takes_trains_model_flags_and_checks(capsys):
    code = main(["derive", "--hidden", "16,8", "--activation", "sigmoid", "--loss", "softmax-bce", "--l2", "0",
                 "--dtype", "float64", "--seed", "3", "--check", "--check-rows", "3", "--check-entries", "5"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("Derivation of 64-16-8-10 sigmoid, loss softmax-bce\n")
    assert "the first 3 training rows of digits" in out and "(worst of 5 sampled entries of 1024)" in out
    assert "no L2 term" in out and "Gradient check passed" in out


def test_a_failing_check_exits_with_1(capsys):
    class Wrong(hg.Activation):
        """Identity whose backward doubles ``G``."""

        def forward(self, Z, out=None):
            return np.multiply(Z, 1.0, out=out)

        def backward(self, G, out=None):
            return np.multiply(G, 2.0, out=out)

    assert main(["derive", "--hidden", "8", "--activation", "wrong", "--check"]) == 1
    out = capsys.readouterr().out
    assert "no derivation declared" in out and "Gradient check FAILED" in out


def test_derive_of_a_trained_model_file_matches_derive_with_the_same_flags(tmp_path, capsys):
    model_file = tmp_path / "model.npz"
    flags = ["--hidden", "12", "--activation", "tanh", "--l2", "0.01"]
    assert main(["train", *flags, "--epochs", "1", "--out", str(model_file), "--no-plots", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["derive", *flags]) == 0
    from_flags = capsys.readouterr().out
    assert main(["derive", "--model", str(model_file)]) == 0
    assert capsys.readouterr().out == from_flags
    out_file = tmp_path / "notes" / "derivation.md"
    assert main(["derive", "--model", str(model_file), "--check", "--format", "markdown", "--out", str(out_file)]) == 0
    assert capsys.readouterr().out == f"derivation written to {out_file}; gradient check passed\n"
    written = out_file.read_text(encoding="utf-8")
    assert written.startswith("# Derivation of 64-12-10 tanh") and "the first 4 training rows of digits" in written


def test_a_model_file_without_a_dataset_is_checked_on_random_rows(tmp_path, capsys):
    path = tmp_path / "bare.npz"
    hg.save(_net(6, n_in=5, n_out=3), path, loss=hg.SoftmaxCrossEntropy(reduction="sum"))
    assert main(["derive", "--model", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "4 random rows (the model file names no dataset)" in out and "κ = 1 (reduction 'sum')" in out


def test_the_mnist_preset_network_derives_and_checks_sampled_entries(shared_data, capsys):
    assert main(["derive", "--dataset", "mnist", "--data-dir", str(shared_data), "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Derivation of 784-256-128-10 relu, loss cross-entropy, L2 λ = 5e-05\n")
    assert "n×784 · 784×256 + 256 → n×256" in out and "n×256 · 256×128 + 128 → n×128" in out
    assert "(worst of 20 sampled entries of 200704)" in _row(out.splitlines(), "W1")
    assert "the first 4 training rows of mnist" in out and "Gradient check passed" in out


def _bad(folder, *argv):
    """Run the real command in a subprocess in ``folder``; return (exit code, stdout, stderr lines)."""
    result = subprocess.run([sys.executable, "-m", "handgrad", "derive", *argv], cwd=folder,
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr.splitlines()


@pytest.mark.parametrize("argv, message", [
    (["--activation", "swishy"], "argument --activation: must be one of"),
    (["--format", "html"], "argument --format: invalid choice: 'html'"),
    (["--model", "damaged.npz"], "damaged.npz"),
    (["--model", "missing.npz"], "missing.npz"),
    (["--model", "damaged.npz", "--hidden", "8"], "--hidden describes a network to build"),
    (["--hidden", "0"], "argument --hidden"),
    (["--check-entries", "-1"], "argument --check-entries"),
    (["--out", "folder"], "--out folder is a folder"),
    (["--dataset", "nothing.csv"], "nothing.csv"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, argv, message):
    (tmp_path / "damaged.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    (tmp_path / "folder").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = _bad(tmp_path, *argv, "--out", "derivation.txt") if "--out" not in argv else _bad(tmp_path, *argv)
    assert code == 2 and out == "" and len(err) == 1 and message in err[0], (code, out, err)
    assert "Traceback" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
