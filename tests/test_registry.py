"""One declaration per piece: a class defined here reaches every part of handgrad with no other edit."""

import json
import warnings

import numpy as np
import pytest
import torch

import handgrad as hg
from handgrad.cli import build_parser, main
from handgrad.constraints import Real
from handgrad.errors import HandgradError, ModelFileError
from handgrad.io.modelfile import load_checkpoint, load_model, save_checkpoint
from handgrad.registry import ESTIMATORS, LAYERS, LOSSES, OPTIMIZERS, SCHEDULES


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



# -- one convention for every saved piece: a user's subclass comes back as itself ----------

@pytest.fixture
def AdamW():  # noqa: N802 - a fixture that hands out a class
    """A user's optimizer with an argument of its own: Adam with decoupled weight decay."""

    class AdamW(hg.Adam):
        constraints = {"weight_decay": Real(0, remedy="0.01 is usual")}

        def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
            super().__init__(lr, betas, eps)
            self.weight_decay = weight_decay

        def step(self, params, grads):
            for p in params:
                p *= 1 - self.lr * self.weight_decay          # θ ← θ − η λ θ, outside the gradient
            super().step(params, grads)

    return AdamW


def test_every_kind_names_its_pieces_by_one_rule():
    assert set(OPTIMIZERS.choices()) >= {"sgd", "adam"}
    assert set(SCHEDULES.choices()) >= {"constant", "cosine", "step-decay"}
    assert hg.LeakyReLU.name == "leaky-relu" and hg.SigmoidBinaryCrossEntropy.name == "sigmoid-bce"
    assert ESTIMATORS.get("MLPRegressor").name == "mlp-regressor"
    assert "Activation" not in LAYERS and "Schedule" not in SCHEDULES and "BaseMLP" not in ESTIMATORS


def test_a_user_optimizer_round_trips_through_a_checkpoint_and_resumes_as_itself(AdamW, tmp_path):
    assert AdamW.name == "adam-w" and OPTIMIZERS.get("AdamW") is AdamW
    with pytest.raises(HandgradError, match="AdamW weight_decay must be a finite number ≥ 0, got -1"):
        AdamW(weight_decay=-1)
    with pytest.raises(HandgradError, match="AdamW lr must be a positive number"):
        AdamW(lr=0)
    X, y = _digits()
    X, y = X[:300], y[:300]

    def run(epochs, model=None, optimizer=None, **resume):
        model = model or hg.mlp(64, [16], 10, seed=3)
        history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer or AdamW(1e-2, weight_decay=0.05),
                         epochs=epochs, batch_size=50, seed=1, **resume)
        return model, history

    full, _ = run(4)
    optimizer = AdamW(1e-2, weight_decay=0.05)
    half, history = run(2, optimizer=optimizer)
    save_checkpoint(tmp_path / "c.npz", half, loss=hg.SoftmaxCrossEntropy(), classes=list(range(10)),
                    optimizer_state=optimizer.state_dict(), epoch=2, history=history.records)
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert type(ckpt.optimizer) is AdamW and ckpt.optimizer.weight_decay == 0.05 and ckpt.optimizer.t == 12
    assert ckpt.optimizer.config() == optimizer.config()
    resumed, _ = run(4, model=ckpt.model, optimizer=ckpt.optimizer, initial_epoch=2, history=hg.History(ckpt.history))
    np.testing.assert_array_equal(resumed.get_weights(), full.get_weights())


def test_a_user_estimator_and_its_user_optimizer_round_trip_through_an_estimator_file(AdamW, tmp_path):
    class DecayedClassifier(hg.MLPClassifier):
        def _new_optimizer(self):
            return AdamW(self.learning_rate_init, weight_decay=0.05)

    X, y = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # three epochs do not converge, and are not meant to
        clf = DecayedClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X[:200], y[:200])
    hg.save(clf, tmp_path / "e.npz")
    loaded = hg.load(tmp_path / "e.npz")
    assert type(loaded) is DecayedClassifier and ESTIMATORS.get("DecayedClassifier") is DecayedClassifier
    state = loaded.to_state()
    assert type(state.optimizer) is AdamW and state.optimizer.weight_decay == 0.05
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    del ESTIMATORS._by_type["DecayedClassifier"]
    with pytest.raises(ModelFileError, match="'DecayedClassifier' is not registered.*define or import the class"):
        hg.load(tmp_path / "e.npz")


def test_a_user_loss_with_a_setting_round_trips_and_a_file_breaking_its_rule_is_refused(tmp_path):
    class ScaledCrossEntropy(hg.SoftmaxCrossEntropy):
        """``s`` times the cross-entropy: its gradient is ``s`` times the fused ``(P − Y)/n``."""

        constraints = {"scale": Real(0, closed="neither")}

        def __init__(self, reduction="mean", scale=2.0):
            super().__init__(reduction)
            self.scale = scale

        def forward(self, Z, y, sample_weight=None):
            return self.scale * super().forward(Z, y, sample_weight=sample_weight)

        def backward(self, out=None):
            G = super().backward(out)
            G *= self.scale
            return G

    with pytest.raises(HandgradError, match="unknown reduction 'average' for ScaledCrossEntropy"):
        ScaledCrossEntropy("average")
    model = hg.mlp(64, [8], 10, seed=0)
    hg.save(model, tmp_path / "m.npz", loss=ScaledCrossEntropy("sum", scale=0.5))
    loaded = load_model(tmp_path / "m.npz").loss
    assert type(loaded) is ScaledCrossEntropy and (loaded.reduction, loaded.scale) == ("sum", 0.5)
    path = tmp_path / "m.npz"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("metadata").tobytes())
    meta["loss"]["scale"] = -1.0
    np.savez(path, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(ModelFileError, match=r"its loss is invalid \(ScaledCrossEntropy scale must be a positive"):
        load_model(path)


def test_a_user_schedule_is_registered_and_rebuilt_from_its_configuration(small_digits):
    class Exponential(hg.schedules.Schedule):
        """``lr · gamma^t``."""

        constraints = {"lr": Real(0, closed="neither"), "gamma": Real(0, 1, closed="right")}

        def __init__(self, lr, gamma=0.5):
            self.lr, self.gamma = lr, gamma

        def __call__(self, t):
            return self.lr * self.gamma ** t

    schedule = Exponential(0.1, gamma=0.25)
    assert Exponential.name == "exponential" and schedule.config() == {"type": "Exponential", "lr": 0.1, "gamma": 0.25}
    rebuilt = SCHEDULES.build(schedule.config())
    assert type(rebuilt) is Exponential and [rebuilt(t) for t in (0, 1, 2)] == [0.1, 0.025, 0.00625]
    with pytest.raises(HandgradError, match=r"Exponential gamma must lie in \(0, 1\], got 2"):
        SCHEDULES.build({**schedule.config(), "gamma": 2})
    for builtin in (hg.schedules.Constant(0.1), hg.schedules.Cosine(0.1, 10, warmup=1, final_lr=0.01),
                    hg.schedules.StepDecay(0.1, 3, factor=0.5)):
        again = SCHEDULES.build(builtin.config())
        assert type(again) is type(builtin) and [again(t) for t in range(12)] == [builtin(t) for t in range(12)]
    X, y = small_digits
    history = hg.fit(hg.mlp(64, [8], 10, seed=0), hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(1.0), epochs=2,
                     batch_size=300, lr_schedule=rebuilt, seed=0)
    assert history["lr"] == [0.1, 0.025]


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
