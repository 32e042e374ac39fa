"""gradcheck: finds wrong gradients, says where, passes right ones, on models, losses, layers and functions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad.errors import HandgradError
from handgrad.nn.gradcheck import compare, numerical_gradient


class Cube(hg.Layer):
    """``A = Z³ ⊙ c`` elementwise with a parameter ``c`` per column; backward is right."""

    parameter_names = ("c",)

    def __init__(self, width):
        self.width = width   # kept under its argument's name, so config() can rebuild it
        self.c = np.linspace(0.5, 1.5, width)
        self.dc = np.zeros(width)

    def forward(self, Z, out=None):
        self._Z = Z
        return Z ** 3 * self.c

    def backward(self, G, out=None):
        self.dc[...] = (G * self._Z ** 3).sum(axis=0)
        return 3 * self._Z ** 2 * self.c * G


class CubeWithWrongParameterGradient(Cube):
    """Right input gradient, but column 2's parameter gradient is copied from column 1."""

    def backward(self, G, out=None):
        dX = super().backward(G, out)
        self.dc[2] = self.dc[1]
        return dX


class CubeWithWrongInputGradient(Cube):
    """The classic slip: ``d(z³)/dz`` written as ``z²``, for one entry only."""

    def backward(self, G, out=None):
        dX = super().backward(G, out)
        dX[1, 0] /= 3
        return dX


def test_a_correct_user_layer_passes(rng):
    report = hg.gradcheck(Cube(3), rng.standard_normal((4, 3)))
    assert report.passed and bool(report)
    assert [row.name for row in report.rows] == ["input", "c"]
    assert report.max_error < 1e-7


def test_a_wrong_input_gradient_fails_and_points_at_the_wrong_entry(rng):
    X = rng.standard_normal((4, 3)) + 2.0           # away from 0, where z² and 3z² would both vanish
    report = hg.gradcheck(CubeWithWrongInputGradient(3), X)
    assert report.passed is False and not report
    row = report.rows[0]
    assert row.name == "input" and row.where == (1, 0)
    assert row.analytic == pytest.approx(row.numeric / 3, rel=1e-6)
    assert report.max_error == row.max_error == pytest.approx(2 / 3, rel=1e-6)
    assert report.rows[1].max_error < 1e-7              # the parameter gradient is still right


def test_a_wrong_parameter_gradient_fails_and_points_at_the_wrong_entry(rng):
    report = hg.gradcheck(CubeWithWrongParameterGradient(3), rng.standard_normal((4, 3)))
    assert not report.passed
    by_name = {row.name: row for row in report.rows}
    assert by_name["input"].max_error < 1e-7
    assert by_name["c"].where == (2,)
    assert by_name["c"].max_error > 1e-3


def test_report_string_holds_a_table_with_every_parameter_and_the_verdict(rng):
    report = hg.gradcheck(CubeWithWrongInputGradient(3), rng.standard_normal((4, 3)) + 2.0)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["parameter", "shape", "max", "rel"]
    assert lines[1].startswith("input") and "(1, 0)" in lines[1] and lines[1].endswith("NO")
    assert lines[2].startswith("c") and lines[2].endswith("yes")
    assert lines[-1].startswith("FAILED") and f"{report.max_error:.2e}" in lines[-1]
    good = str(hg.gradcheck(Cube(3), rng.standard_normal((4, 3))))
    assert good.splitlines()[-1].startswith("passed")


def test_model_report_names_parameters_by_layer_and_finds_a_broken_layer(rng):
    X, y = rng.standard_normal((5, 3)) + 2.0, rng.integers(0, 2, size=5)
    good = hg.Sequential(hg.Dense(3, 3, dtype=np.float64), Cube(3), hg.Dense(3, 2, dtype=np.float64), seed=0)
    report = hg.gradcheck(good, hg.SoftmaxCrossEntropy(), X, y, l2=0.1)
    assert report.passed, str(report)
    assert [row.name for row in report.rows] == ["W1", "b1", "c2", "W3", "b3"]
    broken = hg.Sequential(hg.Dense(3, 3, dtype=np.float64), CubeWithWrongParameterGradient(3),
                           hg.Dense(3, 2, dtype=np.float64), seed=0)
    report = hg.gradcheck(broken, hg.SoftmaxCrossEntropy(), X, y)
    failing = [row.name for row in report.rows if row.max_error >= report.tolerance]
    assert failing == ["c2"] and report.rows[2].where == (2,)


def test_gradcheck_of_a_float32_model_checks_a_float64_copy_and_leaves_the_model_alone(rng):
    model = hg.mlp(4, [5], 3, activation="tanh", seed=0)
    weights = model.get_weights()
    report = hg.gradcheck(model, hg.SoftmaxBinaryCrossEntropy(), rng.standard_normal((6, 4)),
                          rng.integers(0, 3, size=6), l2=0.01)
    assert report.passed, str(report)
    np.testing.assert_array_equal(model.get_weights(), weights)
    assert model.dtype == np.float32


def test_gradcheck_of_a_float32_dense_layer_works_on_a_float64_copy(rng):
    layer = hg.Dense(3, 2, seed=0)
    report = hg.gradcheck(layer, rng.standard_normal((4, 3)))
    assert report.passed and layer.W.dtype == np.float32


def test_a_float32_user_layer_is_refused_with_a_remedy(rng):
    layer = Cube(3)
    layer.c = layer.c.astype(np.float32)
    with pytest.raises(HandgradError, match="build the layer in float64"):
        hg.gradcheck(layer, rng.standard_normal((2, 3)))


def test_gradcheck_refuses_things_it_cannot_check():
    with pytest.raises(HandgradError, match="check_function"):
        hg.gradcheck(lambda x: x, np.zeros(3))


def test_check_function_passes_a_right_hand_derivation_and_fails_a_wrong_one(rng):
    A = rng.standard_normal((3, 3))

    def f(x, M):
        return float(x @ M @ x + np.sin(x).sum())

    def right(x, M):
        return [(M + M.T) @ x + np.cos(x), np.outer(x, x)]

    def wrong(x, M):                                  # forgets Mᵀ: right only for symmetric M
        return [2 * M @ x + np.cos(x), np.outer(x, x)]

    x = rng.standard_normal(3)
    report = hg.check_function(f, right, [x, A], names=["x", "M"])
    assert report.passed, str(report)
    assert [row.name for row in report.rows] == ["x", "M"]
    report = hg.check_function(f, wrong, [x, A], names=["x", "M"])
    assert not report.passed
    assert report.rows[0].max_error > 1e-3 and report.rows[1].max_error < 1e-7
    claimed, true = wrong(x, A)[0], right(x, A)[0]
    relative = np.abs(claimed - true) / np.maximum(np.abs(claimed), np.abs(true))
    assert report.rows[0].where == (int(np.argmax(relative)),)
    assert report.rows[0].max_error == pytest.approx(relative.max(), rel=1e-6)


def test_check_function_works_on_copies_and_checks_the_gradient_count(rng):
    x = rng.standard_normal(4).astype(np.float32)
    x_before = x.copy()
    report = hg.check_function(lambda v: (v ** 2).sum(), lambda v: [2 * v], [x])
    assert report.passed and report.rows[0].name == "arg0"
    np.testing.assert_array_equal(x, x_before)
    with pytest.raises(HandgradError, match="returned 2 gradients for 1 arrays"):
        hg.check_function(lambda v: v.sum(), lambda v: [v, v], [x])
    with pytest.raises(HandgradError, match="has shape"):
        hg.check_function(lambda v: v.sum(), lambda v: [np.ones(3)], [x])


def test_gradcheck_reports_nan_gradients_as_failures(rng):
    report = hg.check_function(lambda v: (v ** 2).sum(), lambda v: [np.full_like(v, np.nan)], [np.ones(3)])
    assert not report.passed and report.max_error == np.inf


def test_numerical_gradient_perturbs_non_contiguous_arrays_too(rng):
    base = rng.standard_normal((3, 4))
    view = base.T                                       # not C-contiguous: reshape(-1) would copy
    grad = numerical_gradient(lambda: float((view ** 2).sum()), view)
    np.testing.assert_allclose(grad, 2 * view, rtol=1e-8)
    np.testing.assert_array_equal(view, base.T)


@settings(max_examples=20, deadline=None)
@given(widths=st.lists(st.integers(1, 4), min_size=1, max_size=4), n=st.integers(1, 4),
       activation=st.sampled_from(["sigmoid", "tanh", "identity"]), seed=st.integers(0, 2**32 - 1),
       loss=st.sampled_from([hg.SoftmaxCrossEntropy("mean"), hg.SoftmaxBinaryCrossEntropy("sum")]),
       l2=st.sampled_from([0.0, 0.05]))
def test_whole_model_gradients_match_central_differences(widths, n, activation, seed, loss, l2):
    *hidden, n_in = widths
    model = hg.mlp(n_in, hidden, 3, activation=activation, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    report = hg.gradcheck(model, loss, rng.standard_normal((n, n_in)), rng.integers(0, 3, size=n), l2=l2)
    assert report.max_error < 1e-6, str(report)


def test_gradcheck_of_a_loss_validates_its_targets_and_leaves_the_logits_alone(rng):
    Z = rng.standard_normal((3, 4))
    Z_before = Z.copy()
    assert hg.gradcheck(hg.SoftmaxCrossEntropy(), Z, [0, 3, 1]).passed
    np.testing.assert_array_equal(Z, Z_before)
    with pytest.raises(hg.DataError, match=r"labels must lie in 0\.\.3"):
        hg.gradcheck(hg.SoftmaxCrossEntropy(), Z, [0, 4, 1])
    with pytest.raises(hg.DataError, match="X has 3 samples but y has 2"):
        hg.gradcheck(hg.SoftmaxBinaryCrossEntropy(), Z, [0, 1])
    with pytest.raises(hg.DataError, match="Z contains NaN"):
        hg.gradcheck(hg.SoftmaxBinaryCrossEntropy(), np.full((3, 4), np.nan), [0, 1, 2])


def test_the_noise_floor_follows_the_tolerance():
    # floor = 4 eps max(|f|, 1) / h / tolerance: 8.9e-4 at the default 1e-6, 8.9e-8 at 1e-2.
    analytic, numeric = np.array([1.05e-5]), np.array([1e-5])            # a 5% error in a small entry
    default = compare("w", analytic, numeric, f_value=1.0)
    loose = compare("w", analytic, numeric, f_value=1.0, tolerance=1e-2)
    assert default.max_error == pytest.approx(5e-7 / (4 * np.finfo(float).eps / 1e-6 / 1e-6))
    assert loose.max_error == pytest.approx(5e-7 / 1.05e-5)                # above the floor: its own scale
    # Below every floor, an error counts as the same fraction of the tolerance at any tolerance.
    tiny = [compare("w", np.array([2e-12]), np.array([1e-12]), 1.0, tolerance=t).max_error / t
            for t in (1e-2, 1e-6, 1e-9)]
    assert tiny == pytest.approx([tiny[0]] * 3)


def test_a_loose_tolerance_still_catches_a_wrong_gradient_of_small_entries():
    # Before the floor followed the tolerance, this 5% error hid under the default 1e-6's floor of 8.9e-4.
    def f(x):
        return float(0.5e-5 * (x ** 2).sum())

    def wrong(x):
        return [1.05e-5 * x]

    assert not hg.check_function(f, wrong, [np.ones(3)], tolerance=1e-2).passed
    assert hg.check_function(f, lambda x: [1e-5 * x], [np.ones(3)], tolerance=1e-2).passed


@pytest.mark.parametrize("tolerance", [0, -1e-6, float("nan"), "1e-6", True])
def test_a_tolerance_that_is_not_positive_is_refused(tolerance, rng):
    with pytest.raises(HandgradError, match="tolerance must be a positive number"):
        hg.check_function(lambda v: (v ** 2).sum(), lambda v: [2 * v], [np.ones(2)], tolerance=tolerance)
    with pytest.raises(HandgradError, match="tolerance must be a positive number"):
        hg.gradcheck(hg.SoftmaxCrossEntropy(), rng.standard_normal((2, 3)), [0, 1], tolerance=tolerance)


def _small_problem(rng):
    model = hg.mlp(6, [5, 4], 3, activation="tanh", dtype=np.float64, seed=1)
    return model, hg.SoftmaxCrossEntropy(), rng.standard_normal((7, 6)), rng.integers(0, 3, 7)


def test_sampling_every_entry_gives_the_full_check_exactly(rng):
    model, loss, X, y = _small_problem(rng)
    full = hg.gradcheck(model, loss, X, y, l2=1e-2)
    sampled = hg.gradcheck(model, loss, X, y, l2=1e-2, entries=10**6)
    assert [(r.name, r.shape, r.where, r.max_error, r.analytic, r.numeric) for r in sampled.rows] == \
           [(r.name, r.shape, r.where, r.max_error, r.analytic, r.numeric) for r in full.rows]


def test_a_sample_is_seeded_checks_entries_per_parameter_and_reports_progress(rng):
    model, loss, X, y = _small_problem(rng)
    calls = []
    report = hg.gradcheck(model, loss, X, y, entries=4, seed=3, progress=lambda *args: calls.append(args))
    sizes = {"W1": 30, "b1": 5, "W2": 20, "b2": 4, "W3": 12, "b3": 3}
    assert [(name, done) for name, done, _ in calls] == [(name, k) for name in sizes
                                                         for k in range(1, min(sizes[name], 4) + 1)]
    assert report.passed and [r.shape for r in report.rows] == [p.shape for p in model.parameters()]
    assert all(0 <= i < s for r in report.rows for i, s in zip(r.where, r.shape))
    again = hg.gradcheck(model, loss, X, y, entries=4, seed=3)
    other = hg.gradcheck(model, loss, X, y, entries=4, seed=4)
    assert [r.where for r in again.rows] == [r.where for r in report.rows] != [r.where for r in other.rows]


def test_a_sample_finds_a_gradient_that_is_wrong_everywhere(rng):
    class Doubled(Cube):
        """Reports twice the true parameter gradient, in every column."""

        def backward(self, G, out=None):
            dX = super().backward(G, out)
            self.dc *= 2
            return dX

    model = hg.Sequential(hg.Dense(4, 40, dtype=np.float64), Doubled(40), hg.Dense(40, 3, dtype=np.float64), seed=0)
    report = hg.gradcheck(model, hg.SoftmaxCrossEntropy(), rng.standard_normal((5, 4)), rng.integers(0, 3, 5),
                          entries=3)
    failing = [row.name for row in report.rows if row.max_error >= report.tolerance]
    assert failing == ["c2"] and report.rows[2].max_error > 0.3


@pytest.mark.parametrize("entries", [0, -1, 2.5, True])
def test_a_bad_sample_size_is_refused(rng, entries):
    model, loss, X, y = _small_problem(rng)
    with pytest.raises(HandgradError, match="entries must be a positive integer"):
        hg.gradcheck(model, loss, X, y, entries=entries)
