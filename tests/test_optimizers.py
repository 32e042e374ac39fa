"""Optimizers against their update formulas, against torch.optim, and through checkpoints."""

import copy

import numpy as np
import pytest

import handgrad as hg
from handgrad.errors import HandgradError
from handgrad.optim.optimizers import optimizer_from_config

SHAPES = [(4, 3), (3,), (2, 5)]
N_STEPS = 5

OPTIMIZERS = {
    "sgd": lambda: hg.SGD(lr=0.1),
    "momentum": lambda: hg.SGD(lr=0.1, momentum=0.9),
    "nesterov": lambda: hg.SGD(lr=0.05, momentum=0.8, nesterov=True),
    "adam": lambda: hg.Adam(lr=0.01),
    "adam-custom": lambda: hg.Adam(lr=0.003, betas=(0.8, 0.95), eps=1e-6),
}


def random_problem(seed, dtype=np.float64):
    """Parameters and one gradient list per step (drawn beforehand, so every implementation sees the same)."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    grads = [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(N_STEPS)]
    return params, grads


def reference_updates(optimizer, params, grad_steps, lrs):
    """The textbook formulas, one parameter array and one step at a time, with state in plain dicts."""
    params = [p.copy() for p in params]
    state = [{"v": np.zeros_like(p), "m": np.zeros_like(p), "s": np.zeros_like(p)} for p in params]
    for t, (grads, lr) in enumerate(zip(grad_steps, lrs), start=1):
        for i, (p, g) in enumerate(zip(params, grads)):
            st = state[i]
            if isinstance(optimizer, hg.SGD):
                if optimizer.momentum == 0:
                    params[i] = p - lr * g
                    continue
                st["v"] = optimizer.momentum * st["v"] + g                  # v ← μv + g
                direction = g + optimizer.momentum * st["v"] if optimizer.nesterov else st["v"]
                params[i] = p - lr * direction
            else:
                b1, b2 = optimizer.beta1, optimizer.beta2
                st["m"] = b1 * st["m"] + (1 - b1) * g
                st["s"] = b2 * st["s"] + (1 - b2) * g ** 2
                m_hat, s_hat = st["m"] / (1 - b1 ** t), st["s"] / (1 - b2 ** t)
                params[i] = p - lr * m_hat / (np.sqrt(s_hat) + optimizer.eps)
    return params


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_matches_the_textbook_update(name):
    params, grad_steps = random_problem(1)
    optimizer = OPTIMIZERS[name]()
    lrs = [optimizer.lr * factor for factor in (1.0, 0.5, 2.0, 1.0, 0.1)]   # as a schedule would set them
    expected = reference_updates(optimizer, params, grad_steps, lrs)
    ids = [id(p) for p in params]
    for grads, lr in zip(grad_steps, lrs):
        optimizer.lr = lr
        optimizer.step(params, grads)
    assert [id(p) for p in params] == ids                              # updated in place
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_flat_adds_the_decay_gradient_to_the_weights_only(name):
    rng = np.random.default_rng(2)
    param = rng.standard_normal(30)
    grad_steps = [rng.standard_normal(30) for _ in range(N_STEPS)]
    l2, n_decayed = 0.3, 18
    fused, plain = OPTIMIZERS[name](), OPTIMIZERS[name]()
    p_fused, p_plain = param.copy(), param.copy()
    for g in grad_steps:
        fused.step_flat(p_fused, g.copy(), l2, n_decayed)
        full = g.copy()
        full[:n_decayed] += l2 * p_plain[:n_decayed]                   # ∂/∂W of (λ/2)‖W‖² is λW
        plain.step([p_plain], [full])
    np.testing.assert_allclose(p_fused, p_plain, rtol=1e-13, atol=1e-15)
    assert not np.array_equal(p_fused, param)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_updates_stay_float32(name):
    params, grad_steps = random_problem(3, np.float32)
    optimizer = OPTIMIZERS[name]()
    for grads in grad_steps:
        optimizer.step(params, grads)
    flat, grad = np.ones(7, dtype=np.float32), np.full(7, 0.5, dtype=np.float32)
    OPTIMIZERS[name]().step_flat(flat, grad, 0.1, 4)
    assert all(p.dtype == np.float32 for p in params) and flat.dtype == np.float32
    assert all(a.dtype == np.float32 for s in optimizer.state for a in s.values())
    expected = reference_updates(optimizer, *random_problem(3, np.float64), [optimizer.lr] * N_STEPS)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-4, atol=1e-5)


def torch_optimizer(name, tensors):
    torch = pytest.importorskip("torch")
    made = OPTIMIZERS[name]()
    if isinstance(made, hg.SGD):
        return torch.optim.SGD(tensors, lr=made.lr, momentum=made.momentum, nesterov=made.nesterov)
    return torch.optim.Adam(tensors, lr=made.lr, betas=(made.beta1, made.beta2), eps=made.eps)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_matches_torch_optim_in_float64(name):
    torch = pytest.importorskip("torch")
    params, grad_steps = random_problem(4)
    tensors = [torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True) for p in params]
    reference = torch_optimizer(name, tensors)
    optimizer = OPTIMIZERS[name]()
    for grads in grad_steps:
        optimizer.step(params, grads)
        for tensor, g in zip(tensors, grads):
            tensor.grad = torch.from_numpy(g.copy())
        reference.step()
    for p, tensor in zip(params, tensors):
        np.testing.assert_allclose(p, tensor.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip_continues_exactly(name):
    params, grad_steps = random_problem(5)
    original = OPTIMIZERS[name]()
    for grads in grad_steps[:3]:
        original.step(params, grads)
    saved = copy.deepcopy(original.state_dict())
    resumed = optimizer_from_config(saved["config"])
    resumed.load_state_dict(saved)
    assert resumed.config() == original.config()
    twin = [p.copy() for p in params]
    for grads in grad_steps[3:]:
        original.step(params, grads)
        resumed.step(twin, grads)
    for p, q in zip(params, twin):
        np.testing.assert_array_equal(p, q)
    for mine, theirs in zip(resumed.state, original.state):
        assert all(not np.shares_memory(mine[k], theirs[k]) for k in mine)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if OPTIMIZERS[n]().config().get("momentum", 1) != 0])
def test_state_dict_is_a_snapshot_without_working_buffers(name):
    params, grad_steps = random_problem(5)
    optimizer = OPTIMIZERS[name]()
    optimizer.step(params, grad_steps[0])
    saved = optimizer.state_dict()
    frozen = copy.deepcopy(saved)
    for grads in grad_steps[1:]:
        optimizer.step(params, grads)
    assert all("scratch" not in group for group in saved["state"])
    for group, kept in zip(saved["state"], frozen["state"]):
        assert group.keys() == kept.keys() and group
        for key in group:
            np.testing.assert_array_equal(group[key], kept[key])
            assert not np.array_equal(group[key], optimizer.state[0][key])


def test_adam_state_dict_keeps_the_step_count():
    params, grad_steps = random_problem(6)
    adam = hg.Adam()
    for grads in grad_steps:
        adam.step(params, grads)
    fresh = hg.Adam()
    fresh.load_state_dict(copy.deepcopy(adam.state_dict()))
    assert fresh.t == N_STEPS


@pytest.mark.parametrize("make, message", [
    (lambda: hg.SGD(lr=0), "lr must be a positive number"),
    (lambda: hg.SGD(lr=float("nan")), "lr must be a positive number"),
    (lambda: hg.SGD(momentum=1.0), "momentum must lie in"),
    (lambda: hg.SGD(nesterov=True), "nesterov=True needs momentum"),
    (lambda: hg.Adam(betas=(0.9, 1.0)), "betas must lie in"),
    (lambda: hg.Adam(eps=0), "eps must be a positive number"),
    (lambda: optimizer_from_config({"type": "RMSprop", "lr": 0.1}), "unknown optimizer"),
])
def test_bad_hyperparameters_are_refused(make, message):
    with pytest.raises(HandgradError, match=message):
        make()


def test_an_optimizer_refuses_parameters_of_another_shape():
    adam = hg.Adam()
    adam.step([np.zeros(3)], [np.ones(3)])
    with pytest.raises(HandgradError, match="make a new one for each model"):
        adam.step([np.zeros(4)], [np.ones(4)])


@pytest.mark.parametrize("name, names", [("sgd", ()), ("momentum", ("velocity",)), ("nesterov", ("velocity",)),
                                         ("adam", ("m", "v"))])
def test_each_optimizer_declares_the_state_it_keeps(name, names):
    optimizer = OPTIMIZERS[name]()
    assert optimizer.state_names == names
    assert type(optimizer).state_names == (names or ("velocity",))       # SGD narrows them without momentum
    params, grad_steps = random_problem(8)
    optimizer.step(params, grad_steps[0])
    assert [tuple(group) for group in optimizer.state_dict()["state"]] == ([names] * len(params) if names else [])


def test_prepare_chooses_the_update_and_changes_nothing(monkeypatch):
    from handgrad import _compiled

    asked = []
    monkeypatch.setattr(_compiled, "for_run", lambda compiled: asked.append(compiled))
    adam, param = hg.Adam(), np.ones(10, dtype=np.float32)
    adam.prepare(param)
    adam.prepare(param, compiled=False)
    assert asked == [None, False] and adam._compiled_choice is False and adam.state == [] and adam.t == 0
    np.testing.assert_array_equal(param, 1)


@pytest.mark.parametrize("compiled", [False, None], ids=["numpy", "compiled-if-built"])
def test_adam_eps_on_v_matches_scikit_learns_update(compiled):
    """``eps_on="v"`` is scikit-learn's Adam: ``lr_t = η √(1−β₂ᵗ)/(1−β₁ᵗ)``, ``θ −= lr_t m/(√v + ε)``.

    ``compiled=None`` runs the compiled kernel where handgrad was built with
    it; a large ε makes the placement visible (with the default placement
    the parameters differ by far more than rounding).
    """
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

    rng = np.random.default_rng(0)
    size = 37
    start = rng.standard_normal(size)
    grads = [1e-3 * rng.standard_normal(size) for _ in range(5)]
    theirs_params = [start.copy()]
    theirs = AdamOptimizer(theirs_params, learning_rate_init=0.01, epsilon=1e-3)
    ours_param, scratch = start.copy(), np.empty(size)
    ours = hg.Adam(0.01, eps=1e-3, eps_on="v")
    textbook = start.copy()
    default = hg.Adam(0.01, eps=1e-3)
    ours.prepare(ours_param, compiled=compiled)
    default.prepare(textbook, compiled=compiled)
    for g in grads:
        theirs.update_params(theirs_params, [g.copy()])
        np.copyto(scratch, g)
        ours.step_flat(ours_param, scratch)
        default.step_flat(textbook, g.copy())
    np.testing.assert_allclose(ours_param, theirs_params[0], rtol=1e-13, atol=1e-15)
    assert np.abs(textbook - theirs_params[0]).max() > 1e-6
    assert optimizer_from_config(ours.config()).eps_on == "v"
    with pytest.raises(HandgradError, match="eps_on"):
        hg.Adam(eps_on="after")
