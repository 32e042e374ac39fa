"""The training loop's fast paths agree with the plain NumPy reference.

``fit`` lets handgrad's optimizers add the L2 gradient inside their update
(``step_flat``), one compiled pass when handgrad was built with its kernels.
Both must reproduce ``objective_step`` followed by ``step`` exactly, bit for
bit.  The tests choose the update through the public ``compiled=``
argument; ``tests/test_compiled.py`` tests the kernels and the policy behind
it (:mod:`handgrad._compiled`).
"""

import numpy as np
import pytest

import handgrad as hg
from handgrad import _compiled
from handgrad.nn.objective import data_gradient_step, objective_step

OPTIMIZERS = {
    "adam": lambda: hg.Adam(3e-3),
    "sgd": lambda: hg.SGD(0.05),
    "momentum": lambda: hg.SGD(0.05, momentum=0.9),
    "nesterov": lambda: hg.SGD(0.05, momentum=0.9, nesterov=True),
}


@pytest.fixture(params=["compiled", "numpy"])
def compiled(request):
    """Run a test once with the compiled kernels (``compiled=True``) and once with NumPy alone."""
    if request.param == "compiled" and not _compiled.available():
        pytest.skip("handgrad's compiled kernels are not built here, or HANDGRAD_NO_COMPILED is set")
    return request.param == "compiled"


def _problem(dtype, rng):
    X = rng.standard_normal((40, 6)).astype(dtype)
    y = rng.integers(0, 3, 40)
    return X, y


def _reference_steps(model, optimizer, X, y, l2, steps):
    for _ in range(steps):
        objective_step(model, hg.SoftmaxCrossEntropy(), X, y, l2)
        optimizer.step([model.flat_parameters], [model.flat_gradients])


def _flat_steps(model, optimizer, X, y, l2, steps, compiled):
    optimizer.prepare(model.flat_parameters, compiled=compiled)
    for _ in range(steps):
        data_gradient_step(model, hg.SoftmaxCrossEntropy(), X, y, l2)
        optimizer.step_flat(model.flat_parameters, model.flat_gradients, l2, model.n_decayed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("l2", [0.0, 0.03])
def test_step_flat_matches_step_bit_for_bit(compiled, name, dtype, l2, rng):
    X, y = _problem(dtype, rng)
    reference = hg.mlp(6, [8, 5], 3, dtype=dtype, seed=3)
    fused = hg.mlp(6, [8, 5], 3, dtype=dtype, seed=3)
    ref_opt, fused_opt = OPTIMIZERS[name](), OPTIMIZERS[name]()
    _reference_steps(reference, ref_opt, X, y, l2, steps=7)
    _flat_steps(fused, fused_opt, X, y, l2, steps=7, compiled=compiled)
    np.testing.assert_array_equal(fused.flat_parameters, reference.flat_parameters)
    # the gradient left behind includes the decay term, as objective_step leaves it
    np.testing.assert_array_equal(fused.flat_gradients, reference.flat_gradients)
    for ref_state, fused_state in zip(ref_opt.state, fused_opt.state):
        for key in ("m", "v", "velocity"):
            if key in ref_state:
                np.testing.assert_array_equal(fused_state[key], ref_state[key])
    assert fused_opt.state_dict().keys() == ref_opt.state_dict().keys()


class _PlainAdam:
    """An optimizer handgrad does not know: ``step(params, grads)`` and its state, no ``step_flat``."""

    def __init__(self, lr):
        self.inner = hg.Adam(lr)
        self.lr = lr

    def step(self, params, grads):
        self.inner.lr = self.lr
        self.inner.step(params, grads)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def test_fit_with_handgrad_optimizer_equals_fit_with_foreign_optimizer(compiled, rng):
    X, y = _problem(np.float32, rng)
    kwargs = dict(epochs=3, batch_size=16, l2=1e-2, seed=5, lr_schedule=hg.schedules.Cosine(1e-2, 3))
    native, foreign = hg.mlp(6, [8], 3, seed=1), hg.mlp(6, [8], 3, seed=1)
    h_native = hg.fit(native, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.Adam(1e-2), compiled=compiled, **kwargs)
    # The same compiled= for both: it also chooses the model's and the loss's passes, not only the update.
    h_foreign = hg.fit(foreign, hg.SoftmaxCrossEntropy(), X, y, optimizer=_PlainAdam(1e-2), compiled=compiled,
                       **kwargs)
    np.testing.assert_array_equal(native.flat_parameters, foreign.flat_parameters)
    assert h_native["train_loss"] == h_foreign["train_loss"]


def test_buffers_do_not_leak_between_batch_sizes(rng):
    model = hg.mlp(6, [8, 5], 3, seed=4)
    X, y = _problem(np.float64, rng)
    loss = hg.SoftmaxCrossEntropy()
    small_value, small_grads = hg.loss_and_gradients(model, loss, X[:7], y[:7], l2=0.1)
    hg.loss_and_gradients(model, loss, X, y, l2=0.1)          # a larger batch in between
    value, grads = hg.loss_and_gradients(model, loss, X[:7], y[:7], l2=0.1)
    assert value == small_value
    for g, ref in zip(grads, small_grads):
        np.testing.assert_array_equal(g, ref)
    assert model.predict(X[:3]).tolist() == model.predict(X)[:3].tolist()


def test_a_subclass_with_its_own_step_is_not_bypassed(compiled, rng):
    class CountingAdam(hg.Adam):
        calls = 0

        def step(self, params, grads):
            CountingAdam.calls += 1
            super().step(params, grads)

    X, y = _problem(np.float32, rng)
    hg.fit(hg.mlp(6, [8], 3, seed=1), hg.SoftmaxCrossEntropy(), X, y, optimizer=CountingAdam(1e-2), epochs=2,
           batch_size=10, seed=0, compiled=compiled)
    assert CountingAdam.calls == 8


def test_step_flat_on_strided_vectors_takes_the_numpy_update(compiled, rng):
    param = rng.standard_normal(40).astype(np.float32)
    grad = rng.standard_normal(40).astype(np.float32)
    strided_param, strided_grad = param.copy()[::2], grad.copy()[::2]
    reference_param, reference_grad = param[::2].copy(), grad[::2].copy()
    adam = hg.Adam(1e-2)
    adam.prepare(strided_param, compiled=compiled)
    adam.step_flat(strided_param, strided_grad, 0.1, 5)
    reference_grad[:5] += np.float32(0.1) * reference_param[:5]
    hg.Adam(1e-2).step([reference_param], [reference_grad])
    np.testing.assert_array_equal(strided_param, reference_param)
