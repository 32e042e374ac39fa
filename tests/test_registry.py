"""One declaration per piece: a class defined here reaches every part of handgrad with no other edit."""

import warnings

import numpy as np
import pytest
import torch

import handgrad as hg
from handgrad.cli import build_parser, main
from handgrad.errors import HandgradError, ModelFileError
from handgrad.io.modelfile import load_model
from handgrad.registry import LAYERS, LOSSES, OPTIMIZERS


@pytest.fixture
def ScaledTanh():  # noqa: N802 - a fixture that hands out a class
    """A user-defined activation, defined inside the test so that it registers for this test only."""

    class ScaledTanh(hg.Activation):
        """``A = s · tanh(Z)``, with a slope ``s`` chosen at construction.

        Backward: ``∂L/∂Z = G ⊙ s (1 − tanh²(Z)) = G ⊙ (s − A²/s)``, from ``A`` alone.
        """

        in_place = True

        def __init__(self, scale=1.7):
            self.scale = scale

        def forward(self, Z, out=None):
            out = np.multiply(np.tanh(Z), self.scale, out=out)
            self._A = out
            return out

        def backward(self, G, out=None):
            return np.multiply(G, self.scale - self._A ** 2 / self.scale, out=out)

    return ScaledTanh


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def test_a_user_activation_is_registered_by_its_class_name_and_offered_by_its_short_name(ScaledTanh):
    assert LAYERS.get("ScaledTanh") is ScaledTanh
    assert hg.activations()["scaled-tanh"] is ScaledTanh
    assert ScaledTanh.initializer == "glorot"
    assert ScaledTanh(0.3).config() == {"type": "ScaledTanh", "scale": 0.3}
    assert repr(ScaledTanh(0.3)) == "ScaledTanh(scale=0.3)"


def test_a_user_activation_with_an_argument_passes_gradcheck_trains_and_survives_save_and_load(ScaledTanh, tmp_path):
    model = hg.Sequential(hg.Dense(64, 16, dtype=np.float64), ScaledTanh(0.3), hg.Dense(16, 10, dtype=np.float64),
                          seed=0)
    X, y = _digits()
    report = hg.gradcheck(model, hg.SoftmaxCrossEntropy(), X[:6].astype(np.float64), y[:6], l2=1e-3)
    assert report.passed, str(report)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), epochs=5, batch_size=64,
                     seed=0)
    assert history["train_accuracy"][-1] > 0.9
    hg.save(model, tmp_path / "m.npz", loss=hg.SoftmaxCrossEntropy())
    loaded = hg.load(tmp_path / "m.npz")
    assert isinstance(loaded.layers[1], ScaledTanh) and loaded.layers[1].scale == 0.3
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert model.astype(np.float32).layers[1].scale == 0.3


def test_the_command_line_and_the_estimator_offer_a_registered_activation(ScaledTanh, tmp_path, capsys):
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    help_text = train.format_help()
    for name in hg.activations():
        assert name in help_text
    out = tmp_path / "model.npz"
    code = main(["train", "--activation", "scaled-tanh", "--hidden", "16", "--epochs", "2", "--out", str(out),
                 "--no-plots", "--no-progress", "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    loaded = load_model(out)
    assert [type(layer).__name__ for layer in loaded.model.layers] == ["Dense", "ScaledTanh", "Dense"]
    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # two epochs do not converge, and are not meant to
        clf = hg.MLPClassifier(hidden_layer_sizes=(16,), activation="scaled_tanh", max_iter=2, random_state=0)
        clf.fit(X, y)
    assert isinstance(clf._network().layers[1], ScaledTanh)


def test_every_name_users_see_comes_from_the_registries():
    from handgrad.cli import settings
    from handgrad.estimators import estimator_activations, estimator_losses

    assert set(settings.activation_names()) == set(hg.activations())
    assert set(settings.loss_names()) == set(hg.losses())
    assert set(settings.optimizer_names()) == set(OPTIMIZERS.choices())
    assert set(estimator_activations()) == {n.replace("-", "_") for n in hg.activations()} | {"logistic"}
    # the estimator is a classifier: it offers the classification losses only
    assert set(estimator_losses()) == {n.replace("-", "_") for n in hg.losses(task="classification")}
    assert {"squared-error", "sigmoid-bce"} <= set(hg.losses()) - set(hg.losses(task="classification"))
    for loss in LOSSES:
        assert LOSSES.build(loss().config()).config() == loss().config()


def test_a_file_naming_an_unregistered_layer_says_which_and_how_to_register_it(tmp_path):
    class Vanishing(hg.Activation):
        in_place = True

        def forward(self, Z, out=None):
            return Z

        def backward(self, G, out=None):
            return G

    model = hg.Sequential(hg.Dense(3, 4), Vanishing(), hg.Dense(4, 2), seed=0)
    hg.save(model, tmp_path / "m.npz")
    del LAYERS._by_type["Vanishing"]
    with pytest.raises(ModelFileError, match="'Vanishing', which is not registered; define or import the class"):
        hg.load(tmp_path / "m.npz")


def test_settings_of_every_builtin_piece_survive_save_and_load(tmp_path):
    model = hg.Sequential(hg.Dense(5, 4, init="he", seed=3), hg.ReLU(), hg.Dense(4, 3), seed=1)
    hg.save(model, tmp_path / "m.npz", loss=hg.SoftmaxBinaryCrossEntropy(reduction="sum"))
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.model.config() == model.config()
    assert loaded.model.layers[0].init == "he" and loaded.model.layers[0].seed == 3
    assert loaded.loss.config() == {"type": "SoftmaxBinaryCrossEntropy", "reduction": "sum"}
    for optimizer in (hg.SGD(0.1, momentum=0.5, nesterov=True), hg.Adam(1e-3, betas=(0.8, 0.9), eps=1e-6)):
        assert OPTIMIZERS.build(optimizer.config()).config() == optimizer.config()


def test_settings_of_the_new_pieces_survive_save_and_load(tmp_path):
    model = hg.Sequential(hg.Dense(5, 6), hg.BatchNorm(6, momentum=0.3, eps=1e-3), hg.LeakyReLU(0.2),
                          hg.Dropout(0.25), hg.Dense(6, 6), hg.ELU(0.5), hg.Dense(6, 6), hg.Softplus(),
                          hg.Dense(6, 6), hg.GELU(), hg.Dense(6, 3), seed=1)
    model.layers[1].running_mean[...] = np.arange(6)
    model.layers[1].running_var[...] = np.arange(1, 7)
    for loss in (hg.SquaredError("sum"), hg.SigmoidBinaryCrossEntropy("mean")):
        hg.save(model, tmp_path / "m.npz", loss=loss)
        loaded = load_model(tmp_path / "m.npz")
        assert loaded.loss.config() == loss.config()
    assert loaded.model.config() == model.config()
    assert loaded.model.config()[1] == {"type": "BatchNorm", "n_features": 6, "momentum": 0.3, "eps": 1e-3}
    assert [loaded.model.layers[i].config() for i in (2, 3, 5)] == [
        {"type": "LeakyReLU", "negative_slope": 0.2}, {"type": "Dropout", "p": 0.25}, {"type": "ELU", "alpha": 0.5}]
    np.testing.assert_array_equal(loaded.model.layers[1].running_mean, np.arange(6))
    np.testing.assert_array_equal(loaded.model.layers[1].running_var, np.arange(1, 7))
    X = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.model.predict_proba(X), model.predict_proba(X))


def test_initialisation_follows_what_the_next_activation_declares():
    class HeLike(hg.Activation):
        initializer = "he"

        def forward(self, Z, out=None):
            return Z

        def backward(self, G, out=None):
            return G

    he = hg.Sequential(hg.Dense(2000, 50), HeLike(), hg.Dense(50, 2), seed=0).layers[0].W
    glorot = hg.Sequential(hg.Dense(2000, 50), hg.Tanh(), hg.Dense(50, 2), seed=0).layers[0].W
    assert he.std() == pytest.approx(np.sqrt(2 / 2000), rel=0.02)
    assert np.abs(glorot).max() <= np.sqrt(6 / 2050) * (1 + 1e-6)


# -- no silent wrong gradient ---------------------------------------------------

def test_a_layer_object_used_twice_is_refused_at_construction():
    act = hg.ReLU()
    with pytest.raises(HandgradError, match=r"same ReLU object is at positions 1 and 3.*hg\.ReLU\(\) each time"):
        hg.Sequential(hg.Dense(4, 5), act, hg.Dense(5, 5), act, hg.Dense(5, 3), seed=0)
    dense = hg.Dense(5, 5)
    with pytest.raises(HandgradError, match="same Dense object"):
        hg.Sequential(hg.Dense(4, 5), hg.ReLU(), dense, hg.ReLU(), dense, seed=0)


def test_the_same_network_with_one_object_per_position_agrees_with_torch():
    """The network of the report, built as handgrad requires, against autograd in float64."""
    def dense(a, b):
        return hg.Dense(a, b, dtype=np.float64)

    for act, torch_act in ((hg.ReLU, torch.relu), (hg.Tanh, torch.tanh)):
        model = hg.Sequential(dense(4, 5), act(), dense(5, 5), act(), dense(5, 3), seed=0)
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((7, 4)), rng.integers(0, 3, 7)
        _, grads = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(), X, y)
        params = [torch.tensor(p, requires_grad=True) for p in model.parameters()]
        h = torch.tensor(X)
        for i in range(0, 6, 2):
            h = h @ params[i] + params[i + 1]
            if i < 4:
                h = torch_act(h)
        torch.nn.functional.cross_entropy(h, torch.tensor(y)).backward()
        for mine, theirs in zip(grads, params):
            np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_gradcheck_checks_a_float64_model_as_built_not_a_copy():
    class Leaky(hg.Activation):
        """A layer whose backward reads state that a copy would not share."""

        def forward(self, Z, out=None):
            self.calls = getattr(self, "calls", 0) + 1
            return Z * 1.0

        def backward(self, G, out=None):
            return G * 1.0

    leaky = Leaky()
    model = hg.Sequential(hg.Dense(3, 4, dtype=np.float64), leaky, hg.Dense(4, 2, dtype=np.float64), seed=0)
    rng = np.random.default_rng(1)
    assert hg.gradcheck(model, hg.SoftmaxCrossEntropy(), rng.standard_normal((5, 3)), rng.integers(0, 2, 5))
    assert leaky.calls > 1


# -- the sigmoid keeps full relative precision in both tails -------------------

@pytest.mark.parametrize("dtype, lowest, tolerance", [(np.float32, -80, 2e-6), (np.float64, -700, 1e-14)])
def test_sigmoid_forward_and_backward_keep_relative_precision_over_the_whole_range(dtype, lowest, tolerance):
    from scipy.special import expit

    z = np.linspace(lowest, -lowest, 4001)
    layer = hg.Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = layer.forward(z.astype(dtype)[None, :])
        dZ = layer.backward(np.ones_like(A))
    exact = expit(z.astype(dtype).astype(np.float64))
    np.testing.assert_allclose(A[0], exact, rtol=tolerance, atol=0)
    negative = z < 0     # on the positive side σ' underflows in 1 − A, as in every framework
    np.testing.assert_allclose(dZ[0][negative], (exact * expit(-z.astype(dtype).astype(np.float64)))[negative],
                               rtol=4 * tolerance, atol=0)
