"""The same hand-derived code on other array API namespaces.

Every layer, loss and optimizer, gradcheck and a whole ``fit`` run on
array-api-strict (its CPU device and the simulated second device
"device1") and on PyTorch's CPU tensors, and give NumPy's values and
gradients in float64 to 1e-12 relative.  Models compute where ``to`` put
them, take input from anywhere and answer in the input's namespace.
"""

import types

import numpy as np
import pytest

import handgrad as hg
from handgrad.arrays import NUMPY, _check_views, ops_for, to_numpy
from handgrad.errors import DataError, HandgradError
from handgrad.registry import LAYERS, LOSSES
from support import count

xs = pytest.importorskip("array_api_strict")
torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

pytestmark = pytest.mark.usefixtures("one_blas_thread")

RTOL = 1e-12

BACKENDS = {
    "strict-cpu": lambda: ops_for(xs, xs.Device("CPU_DEVICE")),
    "strict-device1": lambda: ops_for(xs, xs.Device("device1")),
    "torch-cpu": lambda: ops_for(torch, "cpu"),
}


@pytest.fixture(params=list(BACKENDS))
def backend(request):
    """The ops of one namespace and device other than NumPy."""
    return BACKENDS[request.param]()


def assert_close(actual, expected, rtol=RTOL):
    """``actual`` (any namespace) equals NumPy's ``expected`` to ``rtol``, relative to the largest entry."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(to_numpy(actual), dtype=np.float64)
    assert actual.shape == expected.shape
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def assert_on(ops, array):
    """``array`` belongs to ``ops``'s namespace and device."""
    assert ops_for(array) is ops


# -- the ops module ----------------------------------------------------------------------

def test_numpy_ops_are_numpys_own_functions():
    assert NUMPY.multiply is np.multiply and NUMPY.matmul is np.matmul and NUMPY.copyto is np.copyto
    assert ops_for(np.zeros(3)) is NUMPY and ops_for(np) is NUMPY and ops_for([1.0, 2.0]) is NUMPY


def test_ops_are_one_object_per_namespace_and_device(backend):
    sample = backend.zeros(3, dtype=np.float64)
    assert ops_for(sample) is backend
    assert ops_for(backend.xp, backend.device) is backend


def test_out_is_written_in_place_and_returned(backend):
    a = backend.asarray(np.array([1.0, -2.0, 3.0]))
    out = backend.empty(3, dtype=np.float64)
    assert backend.multiply(a, 2.0, out=out) is out
    assert_close(out, [2.0, -4.0, 6.0])
    backend.greater(a, 0, out=out)                          # a boolean result into a float buffer
    assert_close(out, [1.0, 0.0, 1.0])


def test_a_namespace_whose_slices_are_copies_is_refused():
    copies = types.SimpleNamespace(__name__="copying", reshape=lambda x, shape: np.reshape(x, shape).copy())
    with pytest.raises(HandgradError, match="writable views"):
        _check_views(copies, np.zeros(2))


def test_numpy_on_another_device_is_refused():
    with pytest.raises(HandgradError, match="CPU only"):
        ops_for(np, "cuda")


# -- layers ----------------------------------------------------------------------------

def _builtin(registry):
    return {name: cls for name, cls in registry._by_type.items() if cls.__module__.startswith("handgrad.")}


LAYER_FACTORIES = {
    "Dense": lambda: hg.Dense(5, 4, init="glorot", seed=3, dtype=np.float64),
    "BatchNorm": lambda: hg.BatchNorm(5, dtype=np.float64),
    "Dropout": lambda: hg.Dropout(0.3),
    **{cls.__name__: cls for cls in hg.activations().values() if cls.__module__.startswith("handgrad.")},
}


def test_every_built_in_layer_is_checked_here():
    assert set(LAYER_FACTORIES) == set(_builtin(LAYERS))


def _run_layer(layer, X, G):
    """Forward and backward once: output, input gradient, parameter gradients, buffers (as given)."""
    layer.reseed(7)
    A = layer.forward(X)
    A = layer.ops.copy(A)
    dX = layer.backward(G)
    return A, dX, layer.gradients(), [getattr(layer, name) for name in layer.buffer_names]


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_every_layer_gives_numpys_values_and_gradients(backend, name, training, rng):
    X, G = rng.standard_normal((7, 5)) * 2, rng.standard_normal((7, 4 if name == "Dense" else 5))
    expected = _run_layer(LAYER_FACTORIES[name]().train(training), X, G)
    layer = LAYER_FACTORIES[name]().train(training).to(backend)
    A, dX, grads, buffers = _run_layer(layer, backend.asarray(X), backend.asarray(G))
    assert_on(backend, A)
    assert_close(A, expected[0])
    assert_close(dX, expected[1])
    for actual, wanted in zip(grads + buffers, expected[2] + expected[3]):
        assert_on(backend, actual)
        assert_close(actual, wanted)


def test_a_layer_moved_on_its_own_comes_back(backend, rng):
    layer = hg.Dense(5, 4, init="he", seed=1, dtype=np.float64)
    W = layer.W.copy()
    layer.to(backend)
    assert_on(backend, layer.W)
    layer.to(np)
    assert isinstance(layer.W, np.ndarray) and np.array_equal(layer.W, W)


# -- losses ----------------------------------------------------------------------------

LOSS_CASES = [(name, form) for name, cls in sorted(_builtin(LOSSES).items())
              for _, form in cls.task.example_targets(np.random.default_rng(0), 2, 3)]


@pytest.mark.parametrize("name, form", LOSS_CASES, ids=[f"{n}-{f}" for n, f in LOSS_CASES])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_every_loss_gives_numpys_value_and_gradient(backend, name, form, reduction, weighted, rng):
    loss_cls = LOSSES.get(name)
    Z = rng.standard_normal((6, 3)) * 3
    y = dict((f, t) for t, f in loss_cls.task.example_targets(rng, 6, 3))[form]
    y = loss_cls().check_targets(y, 6, 3, np.float64)
    w = rng.uniform(0, 2, size=6) if weighted else None
    kwargs = {} if w is None else {"sample_weight": w}
    numpy_loss = loss_cls(reduction)
    value, grad = numpy_loss.forward(Z, y, **kwargs), numpy_loss.backward()
    loss = loss_cls(reduction)
    moved = {} if w is None else {"sample_weight": backend.asarray(w)}
    actual = loss.forward(backend.asarray(Z), backend.asarray(y), **moved)
    assert isinstance(actual, float) and actual == pytest.approx(value, rel=RTOL)
    gradient = loss.backward()
    assert_on(backend, gradient)
    assert_close(gradient, grad)


def test_a_loss_copies_numpy_targets_to_its_logits_namespace(backend, rng):
    Z, y = rng.standard_normal((5, 3)), rng.integers(0, 3, size=5)
    expected = hg.SoftmaxCrossEntropy().forward(Z, y)
    assert hg.SoftmaxCrossEntropy().forward(backend.asarray(Z), y) == pytest.approx(expected, rel=RTOL)


# -- optimizers -------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda: hg.SGD(0.1),
    "sgd-momentum": lambda: hg.SGD(0.1, momentum=0.9),
    "sgd-nesterov": lambda: hg.SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: hg.Adam(0.01),
    "adam-eps-on-v": lambda: hg.Adam(0.01, eps_on="v"),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_step_gives_numpys_parameters_and_state(backend, name, rng):
    theta = rng.standard_normal(12)
    gradients = [rng.standard_normal(12) for _ in range(3)]
    numpy_opt, opt = OPTIMIZERS[name](), OPTIMIZERS[name]()
    expected, param = theta.copy(), backend.asarray(theta, copy=True)
    for g in gradients:
        numpy_opt.step_flat(expected, g.copy(), l2=0.01, n_decayed=8)
        opt.step_flat(param, backend.asarray(g, copy=True), l2=0.01, n_decayed=8)
    assert_on(backend, param)
    assert_close(param, expected)
    for group, wanted in zip(opt.state_dict()["state"], numpy_opt.state_dict()["state"]):
        for key in wanted:
            assert isinstance(group[key], np.ndarray)           # state_dict is on the host, for files
            assert_close(group[key], wanted[key])


def test_optimizer_state_loaded_from_the_host_moves_to_the_parameters(backend, rng):
    theta, g = rng.standard_normal(6), rng.standard_normal(6)
    straight, param = hg.Adam(0.01), backend.asarray(theta, copy=True)
    straight.step([param], [backend.asarray(g)])
    resumed = hg.Adam(0.01)
    resumed.load_state_dict(straight.state_dict())
    twin = backend.copy(param)
    straight.step([param], [backend.asarray(g)])
    resumed.step([twin], [backend.asarray(g)])
    assert_on(backend, resumed.state[0]["m"])
    assert_close(twin, to_numpy(param))


def test_compiled_updates_are_refused_off_numpy(backend):
    with pytest.raises(HandgradError, match="NumPy arrays only"):
        hg.Adam().prepare(backend.zeros(4, dtype=np.float64), compiled=True)
    assert hg.Adam().prepare(backend.zeros(4, dtype=np.float64)) is False


# -- models: placement, prediction, gradcheck, fit ------------------------------------------

def _model(seed=0, dropout=0.2, batch_norm=False):
    layers = [hg.Dense(6, 8, dtype=np.float64)]
    layers += [hg.BatchNorm(8, dtype=np.float64), hg.Tanh()] if batch_norm else [hg.ReLU()]
    layers += [hg.Dropout(dropout)] if dropout else []
    return hg.Sequential(*layers, hg.Dense(8, 3, dtype=np.float64), seed=seed)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)


def test_to_moves_parameters_gradients_and_buffers_and_back(backend):
    model = _model(batch_norm=True)
    weights = model.get_weights()
    model.to(backend)
    assert model.ops is backend and model.device == backend.device and model.namespace is backend.xp
    for array in model.parameters() + model.gradients() + [model.layers[1].running_var]:
        assert_on(backend, array)
    model.layers[0].W[0, 0] = 5.0                        # parameters are still views of the flat vector
    assert float(model.flat_parameters[0]) == 5.0
    assert model.to(backend) is model
    model.to(np)
    assert isinstance(model.flat_parameters, np.ndarray) and model.flat_parameters[0] == 5.0
    assert np.array_equal(model.get_weights()[1:], weights[1:])


def test_predictions_come_back_in_the_inputs_namespace(backend):
    X, _ = _data()
    expected = _model().predict_proba(X)
    model = _model().to(backend)
    proba = model.predict_proba(backend.asarray(X))
    assert_on(backend, proba)
    assert_close(proba, expected)
    assert isinstance(model.predict_proba(X), np.ndarray)
    labels = model.predict(backend.asarray(X))
    assert_on(backend, labels)
    assert np.array_equal(to_numpy(labels), expected.argmax(axis=1))
    assert isinstance(model.predict(X), np.ndarray) and isinstance(model(X), np.ndarray)
    assert_on(backend, model(backend.asarray(X)))


def test_a_moved_model_is_saved_from_the_host_and_loads_on_numpy(backend, tmp_path):
    model = _model(batch_norm=True).to(backend)
    hg.save(model, tmp_path / "model.npz")
    loaded = hg.load(tmp_path / "model.npz")
    assert loaded.ops is NUMPY and np.array_equal(loaded.get_weights(), model.get_weights())
    assert isinstance(model.get_weights(), np.ndarray)
    assert all(isinstance(buffer, np.ndarray) for buffer in model.get_buffers().values())


def test_sparse_input_is_refused_by_a_model_off_numpy(backend):
    from scipy import sparse

    with pytest.raises(DataError, match="sparse input"):
        _model().to(backend).predict(sparse.random(4, 6, density=0.5, format="csr"))


def test_gradcheck_passes_on_a_model_a_layer_and_a_loss(backend):
    X, y = _data(n=8)
    assert hg.gradcheck(_model(batch_norm=True).to(backend), hg.SoftmaxCrossEntropy(), backend.asarray(X), y,
                        l2=0.1, entries=count(ci=None, dev=3)).passed
    assert hg.gradcheck(hg.GELU().to(backend), backend.asarray(X[:3])).passed
    assert hg.gradcheck(hg.SoftmaxBinaryCrossEntropy(), backend.asarray(X[:, :3]), y).passed


def test_loss_and_gradients_match_numpy(backend):
    X, y = _data(n=20)
    value, grads = hg.loss_and_gradients(_model(dropout=0.0).train(), hg.SoftmaxCrossEntropy(), X, y, l2=0.1)
    model = _model(dropout=0.0).to(backend).train()
    moved_value, moved = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(), backend.asarray(X), y, l2=0.1)
    assert moved_value == pytest.approx(value, rel=RTOL)
    for actual, expected in zip(moved, grads):
        assert_on(backend, actual)
        assert_close(actual, expected)


def _fit(model, X, y, **settings):
    return hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=3, batch_size=16, seed=4, **settings)


FITS = {
    "adam-dropout-cosine": lambda: dict(model=_model(), settings=dict(
        l2=1e-3, validation_fraction=0.2, lr_schedule=hg.schedules.Cosine(0.01, 3), optimizer=hg.Adam(0.01))),
    "sgd-batchnorm-weights": lambda: dict(model=_model(dropout=0.0, batch_norm=True), settings=dict(
        optimizer=hg.SGD(0.05, momentum=0.9), sample_weight=np.linspace(0.0, 2.0, 60), alpha=1e-3)),
    "augmented": lambda: dict(model=_model(dropout=0.0), settings=dict(
        augment=lambda Xb, rng: Xb + rng.normal(0, 0.1, Xb.shape).astype(Xb.dtype))),
}


@pytest.mark.parametrize("name", sorted(FITS))
def test_a_whole_fit_on_torch_tensors_gives_numpys_weights(name):
    X, y = _data()
    expected, moved = FITS[name](), FITS[name]()
    history = _fit(expected["model"], X, y, **expected["settings"])
    model = moved["model"].to(torch)
    moved_history = _fit(model, torch.asarray(X), torch.asarray(y), **moved["settings"])
    assert isinstance(model.flat_parameters, torch.Tensor)
    assert_close(model.get_weights(), expected["model"].get_weights())
    assert moved_history["train_loss"] == pytest.approx(history["train_loss"], rel=RTOL)
    assert moved_history["train_accuracy"] == history["train_accuracy"]


def test_fit_on_array_api_strict_device1_keeps_everything_on_that_device():
    device = xs.Device("device1")
    X, y = _data()
    expected = _model()
    _fit(expected, X, y, validation_fraction=0.2)
    model = _model().to(xs, device)
    history = _fit(model, xs.asarray(X, device=device), xs.asarray(y, device=device), validation_fraction=0.2)
    assert model.flat_parameters.device == device
    assert_close(model.get_weights(), expected.get_weights())
    assert isinstance(history["val_loss"][-1], float)
    assert hg.evaluate(model, hg.SoftmaxCrossEntropy(), xs.asarray(X, device=device), y)["val_loss"] == \
        pytest.approx(hg.evaluate(expected, hg.SoftmaxCrossEntropy(), X, y)["val_loss"], rel=RTOL)


def test_a_model_on_torch_trains_on_numpy_data_copied_once():
    X, y = _data()
    expected = _model()
    _fit(expected, X, y)
    model = _model().to(torch)
    _fit(model, X, y)
    assert_close(model.get_weights(), expected.get_weights())


def test_float32_stays_float32_on_torch():
    X, y = _data()
    model = hg.mlp(6, [8], 3, seed=0).to(torch)
    _fit(model, torch.asarray(X, dtype=torch.float32), y)
    assert model.flat_parameters.dtype == torch.float32 and model.dtype == np.float32
    assert model.predict_proba(torch.asarray(X)).dtype == torch.float32
