"""The compiled kernels where training uses them: the fused Dense-activation pairs, the cross-entropy, the gather.

Each piece runs beside the NumPy code it replaces, in the same model: the
fused passes (the forwards of Identity, ReLU and LeakyReLU, the backwards of
every activation but Softplus and GELU) must give the same bits, and so must
the softmax cross-entropy in float64; in float32 the kernel's exp and log
are the C library's, within the bound ``tests/test_compiled.py`` states.
Then whole ``hg.fit`` runs, with dropout and batch norm between the pairs,
sample weights and a validation split, with ``compiled=True`` and ``False``.
"""

import pickle

import numpy as np
import pytest

import handgrad as hg
from handgrad import _compiled
from test_compiled import DTYPES, _activations, _ids, _kernels_module


@pytest.fixture
def recorded(monkeypatch):
    """The kernels, wrapped so that each call is counted by name (``recorded.calls``)."""
    for name in _compiled.SWITCHES:
        monkeypatch.delenv(name, raising=False)
    recording = _Recording(_kernels_module())
    monkeypatch.setattr(_compiled, "_kernels", recording)
    return recording


class _Recording:
    """Counts the calls of each kernel, and keeps the activation kinds the layer kernels were asked for."""

    KIND_ARGUMENT = {"bias_activation": 3, "activation_gradient_bias": 4}

    def __init__(self, module):
        self.module, self.calls, self.kinds = module, {}, {}

    def __getattr__(self, name):
        function = getattr(self.module, name)

        def counted(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.KIND_ARGUMENT:
                self.kinds.setdefault(name, []).append(args[self.KIND_ARGUMENT[name]])
            return function(*args)

        return counted


def _net(act, dtype, seed=3):
    """Two pairs: the first Dense reads the data (its input gradient is skipped), the second a hidden layer."""
    return hg.Sequential(hg.Dense(7, 13, dtype=dtype), act, hg.Dense(13, 11, dtype=dtype),
                         type(act)(**_settings(act)), hg.Dense(11, 5, dtype=dtype),
                         seed=seed)


def _settings(act):
    return {key: value for key, value in act.config().items() if key != "type"}


def _pass(model, X, G, compiled):
    model.prepare(compiled)
    logits = model.forward(X).copy()
    model.backward(G)
    return logits, model.flat_gradients.copy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", _activations(), ids=_ids(_activations()))
def test_a_fused_pair_gives_the_numpy_passes_bits(recorded, act, dtype, rng):
    X = rng.standard_normal((19, 7)).astype(dtype)
    G = rng.standard_normal((19, 5)).astype(dtype)
    model = _net(act, dtype)
    with np.errstate(over="ignore", under="ignore"):
        logits_numpy, grads_numpy = _pass(model, X, G, compiled=False)
        assert not recorded.calls
        logits, grads = _pass(model, X, G, compiled=True)
    np.testing.assert_array_equal(logits, logits_numpy)
    np.testing.assert_array_equal(grads, grads_numpy)
    # Each Dense layer's bias add and db go through a kernel, with the activation after it where that pays.
    name, kind = type(act).__name__, _compiled.activation_kind(act)[0]
    identity = _compiled.ACTIVATIONS["Identity"][0]
    assert recorded.kinds["bias_activation"] == [kind if name in _compiled.FUSED_FORWARDS else identity] * 2 + [
        identity]
    assert recorded.kinds["activation_gradient_bias"] == [identity] + [
        kind if name in _compiled.FUSED_BACKWARDS else identity] * 2


@pytest.mark.parametrize("act", [hg.ReLU(), hg.LeakyReLU(0.2), hg.Tanh()], ids=["ReLU", "LeakyReLU", "Tanh"])
def test_either_pass_may_follow_the_other(kernels_loaded, act, rng):
    """Each layer keeps what its own forward keeps: a NumPy backward after a fused forward, and the reverse."""
    X = rng.standard_normal((6, 7)).astype(np.float32)
    G = rng.standard_normal((6, 5)).astype(np.float32)
    model = _net(act, np.float32)
    _, reference = _pass(model, X, G, compiled=False)
    for forward, backward in ((True, False), (False, True)):
        model.prepare(forward)
        model.forward(X)
        model.prepare(backward)
        model.backward(G)
        np.testing.assert_array_equal(model.flat_gradients, reference)


@pytest.fixture
def kernels_loaded(monkeypatch):
    for name in _compiled.SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_compiled, "_kernels", _kernels_module())


def test_a_gradient_the_kernels_cannot_take_goes_through_the_layers(recorded, rng):
    """A pair at the top of the model receives the caller's ``G``: one that is not C-contiguous, or not in the
    model's dtype, is backpropagated by the layers' own calls."""
    model = hg.Sequential(hg.Dense(7, 5), hg.ReLU(), seed=0)
    X = rng.standard_normal((6, 7)).astype(np.float32)
    G = rng.standard_normal((5, 6)).astype(np.float32)
    _, reference = _pass(model, X, np.ascontiguousarray(G.T), compiled=False)
    for odd in (G.T, G.T.astype(np.float64)):               # not C-contiguous; another dtype
        _, grads = _pass(model, X, odd, compiled=True)
        np.testing.assert_array_equal(grads, reference)
    identity, relu = _compiled.ACTIVATIONS["Identity"][0], _compiled.ACTIVATIONS["ReLU"][0]
    # ReLU's own backward, into the model's buffer, which the kernel then takes for Dense's db.
    assert recorded.kinds["activation_gradient_bias"] == [identity, identity]
    _pass(model, X, np.ascontiguousarray(G.T), compiled=True)
    assert recorded.kinds["activation_gradient_bias"][-1] == relu


def test_sparse_input_is_fused_too(recorded, rng):
    sparse = pytest.importorskip("scipy.sparse")
    X = rng.standard_normal((9, 7)) * (rng.random((9, 7)) < 0.3)
    G = rng.standard_normal((9, 5))
    model = _net(hg.ReLU(), np.float64)
    dense = _pass(model, X, G, compiled=False)
    fused = _pass(model, sparse.csr_matrix(X), G, compiled=True)
    for a, b in zip(fused, dense):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    relu, identity = _compiled.ACTIVATIONS["ReLU"][0], _compiled.ACTIVATIONS["Identity"][0]
    assert recorded.kinds["bias_activation"] == [relu, relu, identity]


def test_only_handgrads_own_dense_and_activations_are_fused(recorded, rng):
    class MyDense(hg.Dense):
        pass

    class MyReLU(hg.ReLU):
        pass

    model = hg.Sequential(MyDense(4, 6), hg.ReLU(), hg.Dense(6, 6), MyReLU(), hg.Dense(6, 2), seed=0)
    model.prepare(True)
    model.forward(rng.standard_normal((3, 4)).astype(np.float32))
    # Two bias adds: the handgrad Dense layers', neither with the activation after it.
    assert recorded.kinds["bias_activation"] == [_compiled.ACTIVATIONS["Identity"][0]] * 2


def test_prepare_follows_the_switch_and_the_namespace(monkeypatch, kernels_loaded):
    model = _net(hg.ReLU(), np.float32)
    assert model.prepare() is True
    assert model.prepare(False) is False
    assert hg.SoftmaxCrossEntropy().prepare() is True
    assert hg.SquaredError().prepare() is False
    with pytest.raises(hg.HandgradError, match="compiled must be None"):
        model.prepare("yes")
    monkeypatch.setenv("HANDGRAD_NO_COMPILED", "1")
    monkeypatch.setattr(_compiled, "_kernels", _compiled._UNLOADED)
    assert model.prepare() is False
    assert hg.SoftmaxCrossEntropy().prepare() is False
    with pytest.raises(hg.HandgradError, match="HANDGRAD_NO_COMPILED is set"):
        model.prepare(True)


def test_a_model_on_another_namespace_runs_the_layers_own_calls(recorded, rng):
    xp = pytest.importorskip("array_api_strict")
    model = _net(hg.ReLU(), np.float32).to(xp)
    assert model.prepare() is False
    X = xp.asarray(rng.standard_normal((4, 7)).astype(np.float32))
    model.backward(model.forward(X) * 0 + 1)
    assert not recorded.calls


# -- the cross-entropy -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_compiled_cross_entropy_equals_the_loss(recorded, dtype, reduction, rng):
    Z = (3 * rng.standard_normal((40, 10))).astype(dtype)
    y = rng.integers(0, 10, 40)
    values, gradients = [], []
    for compiled in (False, True):
        loss = hg.SoftmaxCrossEntropy(reduction=reduction)
        loss.prepare(compiled)
        values.append(loss.forward(Z, y))
        gradients.append(loss.backward())
    assert recorded.calls == {"softmax_cross_entropy": 1}
    eps = float(np.finfo(dtype).eps)
    scale = 1 / 40 if reduction == "mean" else 1.0
    if dtype == np.float64:         # exp and log agree here: the same bits (the kernel table's "here")
        assert values[1] == values[0]
        np.testing.assert_array_equal(gradients[1], gradients[0])
    assert values[1] == pytest.approx(values[0], rel=8 * eps)
    np.testing.assert_allclose(gradients[1], gradients[0], rtol=0, atol=8 * eps * scale)


def test_the_compiled_cross_entropy_hands_out_copies(kernels_loaded, rng):
    Z = rng.standard_normal((6, 4)).astype(np.float32)
    loss = hg.SoftmaxCrossEntropy()
    loss.forward(Z, rng.integers(0, 4, 6))
    first = loss.backward()
    first[...] = 0
    second, into = loss.backward(), np.empty_like(Z)
    assert np.abs(second).sum() > 0
    assert loss.backward(out=into) is into
    np.testing.assert_array_equal(into, second)
    loss.forward(Z, rng.integers(0, 4, 6), sample_weight=np.ones(6))       # the NumPy path again
    assert not np.array_equal(loss.backward(), second)


def test_the_compiled_cross_entropy_counts_the_accuracy_once_for_its_own_arrays(kernels_loaded, rng):
    Z = rng.standard_normal((30, 4))
    y = rng.integers(0, 4, 30)
    loss = hg.SoftmaxCrossEntropy()
    loss.forward(Z, y)
    assert loss.counted_correct(Z.copy(), y) is None                  # other arrays: not counted
    loss.forward(Z, y)
    assert loss.counted_correct(Z, y) == np.count_nonzero(Z.argmax(axis=1) == y)
    assert loss.counted_correct(Z, y) is None                         # read once


@pytest.mark.parametrize("case", ["sample weights", "one-hot rows", "int32 labels", "a subclass"])
def test_the_cross_entropy_keeps_its_numpy_path_where_the_kernel_does_not_apply(recorded, case, rng):
    Z = rng.standard_normal((8, 3))
    y = rng.integers(0, 3, 8)
    loss = hg.SoftmaxCrossEntropy()
    arguments = {"sample weights": (Z, y, np.ones(8)), "one-hot rows": (Z, np.eye(3)[y]),
                 "int32 labels": (Z, y.astype(np.int32)), "a subclass": (Z, y)}[case]
    if case == "a subclass":
        class Scaled(hg.SoftmaxCrossEntropy):
            def backward(self, out=None):
                return 2 * super().backward(out)

        loss = Scaled()
    loss.forward(*arguments)
    loss.backward()
    assert not recorded.calls


# -- whole runs --------------------------------------------------------------------------------------


def _mixed_network(dtype):
    """Pairs that fuse (ReLU, Tanh), pairs split by batch norm, and dropout after an activation."""
    return hg.Sequential(hg.Dense(12, 24, dtype=dtype), hg.ReLU(), hg.Dropout(0.2),
                         hg.Dense(24, 16, dtype=dtype), hg.BatchNorm(16, dtype=dtype), hg.ReLU(),
                         hg.Dense(16, 16, dtype=dtype), hg.Tanh(),
                         hg.Dense(16, 4, dtype=dtype), seed=1)


def _fit(dtype, optimizer, compiled, X, y, **settings):
    model = _mixed_network(dtype)
    history = hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer(), epochs=4, batch_size=16,
                     l2=1e-3, seed=0, validation_fraction=0.2, compiled=compiled, **settings)
    return model.get_weights(), history


RUNS = {
    "adam float32": (np.float32, lambda: hg.Adam(3e-3)),
    "sgd momentum float64": (np.float64, lambda: hg.SGD(0.05, momentum=0.9)),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample weights"])
@pytest.mark.parametrize("run", sorted(RUNS))
def test_whole_fits_give_the_same_weights_compiled_or_not(recorded, run, weighted, rng):
    """Bit for bit, except float32 through the cross-entropy kernel (exp and log to the last bit, see above)."""
    dtype, optimizer = RUNS[run]
    X = rng.standard_normal((150, 12)).astype(dtype)
    y = rng.integers(0, 4, 150)
    settings = {"sample_weight": rng.uniform(0.5, 2, 150)} if weighted else {}
    weights, history = _fit(dtype, optimizer, True, X, y, **settings)
    assert {"take_rows", "bias_activation", "activation_gradient_bias"} <= set(recorded.calls)
    assert ("softmax_cross_entropy" in recorded.calls) is not weighted
    weights_numpy, history_numpy = _fit(dtype, optimizer, False, X, y, **settings)
    if dtype == np.float64 or weighted:
        np.testing.assert_array_equal(weights, weights_numpy)
        assert history["train_loss"] == history_numpy["train_loss"]
        assert history["val_loss"] == history_numpy["val_loss"]
    else:
        # The bias of the Dense layer before batch norm has a gradient of 0 on paper (the normalisation takes
        # out any shift), so what Adam makes of it is rounding noise, scaled up to whole steps: left out.
        kept = _all_but(_mixed_network(dtype), position=3, name="b")
        np.testing.assert_allclose(weights[kept], weights_numpy[kept], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(history["train_loss"], history_numpy["train_loss"], rtol=1e-5)
    assert history["train_accuracy"] == history_numpy["train_accuracy"]


def _all_but(model, position, name):
    """A mask of the flat parameter vector without parameter ``name`` of the layer at ``position``."""
    kept = np.ones(model.flat_parameters.shape[0], dtype=bool)
    layer = model.layers[position]
    start, shape = next((start, shape) for owner, attribute, start, shape in model._slots
                        if owner is layer and attribute == name)
    kept[start:start + int(np.prod(shape))] = False
    return kept


def test_a_shuffle_of_int32_positions_is_gathered_by_the_kernel(recorded, rng):
    X = rng.standard_normal((40, 12))
    y = rng.integers(0, 4, 40)
    orders = [np.random.default_rng(epoch).permutation(40).astype(np.int32) for epoch in range(2)]
    runs = []
    for compiled in (True, False):
        model = _mixed_network(np.float64)
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, epochs=2, batch_size=8, seed=0, compiled=compiled,
               shuffle=lambda epoch: orders[epoch])
        runs.append(model.get_weights())
    assert recorded.calls["take_rows"] == 2 * 2 * 5
    np.testing.assert_array_equal(*runs)


# -- what the update remembers ----------------------------------------------------------------------


@pytest.mark.parametrize("compiled", [True, False])
def test_an_update_follows_a_state_loaded_between_steps(kernels_loaded, compiled, rng):
    """The update checks its vectors and state once and remembers them: a state loaded back (a divergence
    rolled back, a checkpoint) must still be the one it updates, and the memory is not pickled."""
    start = rng.standard_normal(40)
    grads = [rng.standard_normal(40) for _ in range(3)]
    runs = []
    for choice in (compiled, False):
        optimizer, p = hg.Adam(1e-2), start.copy()
        optimizer.prepare(p, compiled=choice)
        optimizer.step_flat(p, grads[0].copy(), 0.1, 30)
        saved, p_saved = optimizer.state_dict(), p.copy()
        optimizer.step_flat(p, grads[1].copy(), 0.1, 30)
        optimizer.load_state_dict(saved)
        p[...] = p_saved
        optimizer.step_flat(p, grads[2].copy(), 0.1, 30)
        runs.append(p)
        assert "_checked_flat" not in pickle.loads(pickle.dumps(optimizer)).__dict__
    np.testing.assert_array_equal(*runs)
