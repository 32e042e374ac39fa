"""Whole-network gradients against PyTorch autograd in float64, to 1e-9 relative.

The torch side is written from the definitions only: layers are
``torch.nn.Linear`` (whose weight is handgrad's ``W`` transposed), the
activations are torch's, cross-entropy is ``F.cross_entropy``, and seed 002's
loss is spelled out as ``−Σ_t [y_t log s_t + (1 − y_t) log(1 − s_t)]``.
"""

import itertools

import numpy as np
import pytest

import handgrad as hg

torch = pytest.importorskip("torch")
F = torch.nn.functional

# The torch function for each registered activation; the random networks cycle through all of them.
TORCH_ACTIVATIONS = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "identity": lambda a: a,
    "leaky-relu": F.leaky_relu, "elu": F.elu, "gelu": F.gelu,     # torch's defaults: slope 0.01, alpha 1, exact GELU
    # torch's softplus returns z itself above `threshold` (default 20), which is off by e^{−20} = 2e-9 relative;
    # a threshold of 50 keeps its exact log1p(e^z) wherever float64 can tell the difference.
    "softplus": lambda a: F.softplus(a, threshold=50.0),
}
HANDGRAD_ACTIVATIONS = hg.activations()
ACTIVATION_CYCLE = sorted(HANDGRAD_ACTIVATIONS)


def test_every_registered_activation_has_a_torch_counterpart():
    assert set(TORCH_ACTIVATIONS) == set(HANDGRAD_ACTIVATIONS)
N_SAMPLES, N_FEATURES, N_CLASSES = 9, 5, 4


def build_pair(n_hidden, seed):
    """A float64 handgrad model and the same network as torch modules (weights copied)."""
    rng = np.random.default_rng(seed)
    widths = [N_FEATURES, *rng.integers(2, 7, size=n_hidden), N_CLASSES]
    activations = [ACTIVATION_CYCLE[(seed + i) % len(ACTIVATION_CYCLE)] for i in range(n_hidden)]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(hg.Dense(int(a), int(b), dtype=np.float64))
        if i < n_hidden:
            layers.append(HANDGRAD_ACTIVATIONS[activations[i]]())
    model = hg.Sequential(*layers, seed=seed)
    for layer in model.layers:                      # non-zero biases, so db is tested with a signal
        if isinstance(layer, hg.Dense):
            layer.b = 0.3 * rng.standard_normal(layer.n_out)
    linears = []
    for layer in model.layers:
        if isinstance(layer, hg.Dense):
            linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.W.T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.b.copy()))
            linears.append(linear)
    return model, linears, activations


def torch_objective(linears, activations, X, y, loss_name, reduction, l2):
    h = torch.from_numpy(X)
    for i, linear in enumerate(linears):
        h = linear(h)
        if i < len(activations):
            h = TORCH_ACTIVATIONS[activations[i]](h)
    Y = F.one_hot(torch.from_numpy(y), N_CLASSES).double() if y.ndim == 1 else torch.from_numpy(y)
    if loss_name == "SoftmaxCrossEntropy":
        value = F.cross_entropy(h, torch.from_numpy(y) if y.ndim == 1 else Y, reduction=reduction)
    else:
        s = torch.softmax(h, dim=1)
        per_sample = -(Y * torch.log(s) + (1 - Y) * torch.log(1 - s)).sum(dim=1)
        value = per_sample.mean() if reduction == "mean" else per_sample.sum()
    penalty = sum((linear.weight ** 2).sum() for linear in linears)
    return value + 0.5 * l2 * penalty


def torch_gradients(linears):
    """In handgrad's order and layout: W₁ (= weightᵀ), b₁, W₂, b₂, …"""
    grads = []
    for linear in linears:
        grads.extend([linear.weight.grad.numpy().T, linear.bias.grad.numpy()])
    return grads


CASES = list(itertools.product(range(5), ["SoftmaxCrossEntropy", "SoftmaxBinaryCrossEntropy"], ["mean", "sum"],
                               [0.0, 0.05], ["labels", "probabilities"]))


@pytest.mark.parametrize("n_hidden, loss_name, reduction, l2, targets", CASES)
def test_network_gradients_agree_with_torch_autograd(n_hidden, loss_name, reduction, l2, targets):
    seed = CASES.index((n_hidden, loss_name, reduction, l2, targets))
    model, linears, activations = build_pair(n_hidden, seed)
    rng = np.random.default_rng(1000 + seed)
    X = 1.5 * rng.standard_normal((N_SAMPLES, N_FEATURES))
    if targets == "labels":
        y = rng.integers(0, N_CLASSES, size=N_SAMPLES)
    else:
        y = rng.dirichlet(np.ones(N_CLASSES), size=N_SAMPLES)
    loss = getattr(hg, loss_name)(reduction)

    value, grads = hg.loss_and_gradients(model, loss, X, y, l2=l2)
    expected = torch_objective(linears, activations, X, y, loss_name, reduction, l2)
    expected.backward()

    assert value == pytest.approx(expected.item(), rel=1e-12)
    reference = torch_gradients(linears)
    assert [g.shape for g in grads] == [r.shape for r in reference]
    for i, (g, r) in enumerate(zip(grads, reference)):
        # Entries that vanish mathematically come out as rounding noise around
        # 0 on both sides; an absolute floor of 1e-12 of the largest entry
        # keeps them from dominating a relative comparison.
        atol = 1e-12 * max(np.abs(r).max(), 1e-300)
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=atol, err_msg=f"parameter {i} ({model.parameters()[i].shape})")


def test_the_torch_side_is_sensitive_to_a_transposed_weight():
    """Guard for the comparison itself: a model whose W was copied untransposed disagrees."""
    model = hg.Sequential(hg.Dense(3, 3, dtype=np.float64), hg.Tanh(), hg.Dense(3, 2, dtype=np.float64), seed=0)
    linears = [torch.nn.Linear(3, 3, dtype=torch.float64), torch.nn.Linear(3, 2, dtype=torch.float64)]
    with torch.no_grad():
        linears[0].weight.copy_(torch.from_numpy(model.layers[0].W.copy()))          # deliberately not .T
        linears[0].bias.zero_()
        linears[1].weight.copy_(torch.from_numpy(model.layers[2].W.T.copy()))
        linears[1].bias.zero_()
    X, y = np.random.default_rng(0).standard_normal((4, 3)), np.array([0, 1, 1, 0])
    value, _ = hg.loss_and_gradients(model, hg.SoftmaxCrossEntropy(), X, y)
    expected = torch_objective(linears, ["tanh"], X, y, "SoftmaxCrossEntropy", "mean", 0.0)
    assert value != pytest.approx(expected.item(), rel=1e-6)
