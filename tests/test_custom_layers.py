"""Layers declare their own widths and initialisation: a user layer that changes the width works like Dense."""

import hashlib

import numpy as np
import pytest

import handgrad as hg
from handgrad.cli.common import describe
from handgrad.errors import HandgradError


@pytest.fixture
def LowRank():  # noqa: N802 - a fixture that hands out a class
    """A user layer with parameters that changes the width, defined here so that it registers for one test."""

    class LowRank(hg.Layer):
        """``Z = X U V + b`` with ``U`` (n_in, rank) and ``V`` (rank, n_out).

        Backward, for ``G = ∂L/∂Z``: ``∂L/∂V = (XU)ᵀ G``, ``∂L/∂U = Xᵀ (G Vᵀ)``,
        ``∂L/∂b = Σ_rows G``, ``∂L/∂X = (G Vᵀ) Uᵀ``.  It reads ``X`` and ``XU``,
        never its output, so an in-place activation after it may overwrite that.
        """

        parameter_names = ("U", "V", "b")
        decayed_names = ("U", "V")
        backward_reads_output = False

        def __init__(self, n_in, n_out, rank, dtype=np.float32):
            self.n_in, self.n_out, self.rank = n_in, n_out, rank
            self.dtype = dtype
            self.U = np.zeros((n_in, rank), dtype)
            self.V = np.zeros((rank, n_out), dtype)
            self.b = np.zeros(n_out, dtype)
            self.dU, self.dV, self.db = (np.zeros_like(p) for p in (self.U, self.V, self.b))
            self.schemes = []           # one entry per initialize call

        def input_width(self):
            return self.n_in

        def output_width(self, width):
            return self.n_out

        def initialize(self, rng, scheme):
            self.schemes.append(scheme)
            gain = 2.0 if scheme == "he" else 1.0       # Var(XUV) = gain · Var(X)
            self.U[...] = rng.standard_normal(self.U.shape) / np.sqrt(self.n_in)
            self.V[...] = rng.standard_normal(self.V.shape) * np.sqrt(gain / self.rank)

        @classmethod
        def parameter_shapes(cls, config):
            n_in, n_out, rank = config["n_in"], config["n_out"], config["rank"]
            return {"U": (n_in, rank), "V": (rank, n_out), "b": (n_out,)}

        def forward(self, X, out=None):
            self._X, self._XU = X, X @ self.U
            out = np.matmul(self._XU, self.V, out=out)
            out += self.b
            return out

        def backward(self, G, out=None):
            GV = G @ self.V.T
            self.dV[...] = self._XU.T @ G
            self.dU[...] = self._X.T @ GV
            self.db[...] = G.sum(axis=0)
            return np.matmul(GV, self.U.T, out=out)

    return LowRank


def _network(LowRank, dtype=np.float32, seed=0):  # noqa: N803 - the fixture's class
    """The issue's case: a BatchNorm after a user layer that narrows the width, then the usual tail."""
    return hg.Sequential(hg.Dense(64, 48, dtype=dtype), hg.ReLU(), LowRank(48, 32, 4, dtype=dtype),
                         hg.BatchNorm(32, dtype=dtype), hg.ReLU(), hg.Dense(32, 10, dtype=dtype), seed=seed)


def test_a_user_layer_that_changes_the_width_sets_the_widths_after_it(LowRank):  # noqa: N803
    model = _network(LowRank)
    assert model.widths == [64, 48, 48, 32, 32, 32, 10]
    assert (model.n_features, model.n_outputs) == (64, 10)
    assert model.layer_sizes == [64, 48, 32, 10]
    assert describe(model) == "64-48-32-10 relu, batch norm"
    first = hg.Sequential(LowRank(64, 32, 4), hg.Tanh(), hg.Dense(32, 10), seed=0)
    assert (first.n_features, first.n_outputs) == (64, 10)


def test_a_batchnorm_of_the_wrong_width_after_a_user_layer_is_refused_naming_it(LowRank):  # noqa: N803
    with pytest.raises(HandgradError, match=r"LowRank\(n_in=48, n_out=32, rank=4\) outputs 32 features but the "
                                            r"next .* normalises 48; build it as BatchNorm\(32\)"):
        hg.Sequential(hg.Dense(64, 48), hg.ReLU(), LowRank(48, 32, 4), hg.BatchNorm(48), hg.Dense(48, 10))
    with pytest.raises(HandgradError, match=r"outputs 48 features but the next LowRank.* takes 40"):
        hg.Sequential(hg.Dense(64, 48), LowRank(40, 10, 2))


def test_a_user_layer_is_initialised_once_for_the_scheme_the_layers_after_it_ask(LowRank):  # noqa: N803
    model = _network(LowRank)
    assert model.layers[2].schemes == ["he"]             # the ReLU after the BatchNorm decides
    assert hg.Sequential(LowRank(8, 4, 2), hg.Tanh(), hg.Dense(4, 2), seed=0).layers[0].schemes == ["glorot"]
    np.testing.assert_array_equal(_network(LowRank, seed=3).get_weights(), _network(LowRank, seed=3).get_weights())


def test_a_user_layer_passes_gradcheck_in_a_model_alone_and_against_its_own_formulas(LowRank, rng):  # noqa: N803
    X, y = rng.standard_normal((6, 64)), rng.integers(0, 10, 6)
    report = hg.gradcheck(_network(LowRank), hg.SoftmaxCrossEntropy(), X, y, l2=1e-3, entries=8)  # float64 copy
    assert report.passed, str(report)
    assert [row.name for row in report.rows][2:5] == ["U2", "V2", "b2"]
    first = hg.Sequential(LowRank(5, 4, 2, dtype=np.float64), hg.ReLU(), hg.Dense(4, 3, dtype=np.float64), seed=1)
    assert hg.gradcheck(first, hg.SoftmaxCrossEntropy(), X[:, :5], y % 3).passed
    layer = first.layers[0]
    assert hg.gradcheck(LowRank(5, 4, 2), X[:, :5]).passed                  # float32: checked on a copy

    R = rng.standard_normal((6, 4))

    def f(X, U, V, b):
        return float(np.sum((X @ U @ V + b) * R))

    def grad_f(X, U, V, b):
        layer.U[...], layer.V[...], layer.b[...] = U, V, b
        layer.forward(X)
        dX = layer.backward(R)
        return [dX, layer.dU.copy(), layer.dV.copy(), layer.db.copy()]

    arrays = [X[:, :5], layer.U.copy(), layer.V.copy(), rng.standard_normal(4)]
    assert hg.check_function(f, grad_f, arrays, names=["X", "U", "V", "b"]).passed


def test_a_user_layer_trains_and_survives_save_and_load(LowRank, digits, tmp_path):  # noqa: N803
    X, y = digits
    X = X.astype(np.float32)
    model = _network(LowRank)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=3, batch_size=64,
                     seed=0)
    assert history["train_loss"][-1] < history["train_loss"][0] / 2
    hg.save(model, tmp_path / "m.npz", loss=hg.SoftmaxCrossEntropy())
    loaded = hg.load(tmp_path / "m.npz")
    assert loaded.config() == model.config()
    assert loaded.config()[2] == {"type": "LowRank", "n_in": 48, "n_out": 32, "rank": 4}
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert hg.derive(loaded, hg.SoftmaxCrossEntropy()).count("n×48 → n×32") == 1


# -- Dense: drawn once, with the numbers it always had -------------------------

def test_a_dense_layer_is_drawn_once_in_a_model_and_at_first_use_on_its_own(monkeypatch):
    draws = []
    original = hg.Dense._draw
    monkeypatch.setattr(hg.Dense, "_draw", lambda self, scheme, rng: (draws.append(scheme), original(self, scheme, rng)))
    hg.mlp(8, [16, 12], 3, activation="relu", seed=0)
    assert draws == ["he", "he", "glorot"]
    draws.clear()
    layer = hg.Dense(4, 3, seed=5)
    assert draws == []                               # the scheme is not known yet
    first = layer.W.copy()
    layer.forward(np.ones((2, 4), dtype=np.float32))
    assert draws == ["glorot"]
    np.testing.assert_array_equal(layer.W, first)
    hg.Dense(4, 3, init="he", seed=5)
    assert draws == ["glorot", "he"]                 # an explicit scheme is drawn at construction


def _digest(arrays):
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


# sha256 (first 16 hex digits) of the parameters these builds gave before layers declared their own
# initialisation, computed with handgrad at commit 0739dd6 (Dense drew at construction, Sequential drew again).
BEFORE = {
    "relu mlp": (lambda: hg.mlp(8, [16, 12], 3, activation="relu", seed=0).parameters(), "3d75f1a63f36e811"),
    "tanh mlp": (lambda: hg.mlp(8, [16, 12], 3, activation="tanh", seed=1).parameters(), "b34fcc61e9f3d927"),
    "mixed": (lambda: hg.Sequential(hg.Dense(5, 6, seed=7), hg.BatchNorm(6), hg.LeakyReLU(), hg.Dropout(0.2),
                                    hg.Dense(6, 4), hg.Sigmoid(), hg.Dense(4, 2, init="he", seed=3),
                                    seed=11).parameters(), "68f322d5471b164b"),
    "batchnorm then dense": (lambda: hg.Sequential(hg.Dense(3, 4), hg.BatchNorm(4), hg.Dense(4, 2),
                                                   seed=2).parameters(), "bf2afa5552a62aae"),
    "float64 gelu": (lambda: hg.Sequential(hg.Dense(5, 7, dtype=np.float64), hg.GELU(),
                                           hg.Dense(7, 2, dtype=np.float64), seed=4).parameters(),
                     "27a43c4a916677c6"),
    "standalone": (lambda: [hg.Dense(4, 3, seed=5).W, hg.Dense(4, 3, seed=5).b], "b02d9501fab5d6b2"),
    "standalone he": (lambda: [hg.Dense(4, 3, init="he", seed=5).W], "60393360c53172b1"),
}


@pytest.mark.parametrize("case", BEFORE)
def test_the_same_seed_draws_the_same_weights_as_before(case):
    build, expected = BEFORE[case]
    assert _digest(build()) == expected
