"""Whole-network gradients against PyTorch autograd in float64, to 1e-9 relative.

The torch side is written from the definitions only: layers are
``torch.nn.Linear`` (whose weight is handgrad's ``W`` transposed), the
activations are torch's, cross-entropy is ``F.cross_entropy``, and seed 002's
loss is spelled out as ``−Σ_t [y_t log s_t + (1 − y_t) log(1 − s_t)]``.
Batch normalisation is ``F.batch_norm`` (training or inference), dropout
multiplies by the mask handgrad drew, squared error is ``½ Σ (z − y)²`` and
the multilabel loss is ``F.binary_cross_entropy_with_logits``.
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


# -- random whole networks mixing the new pieces with the old ---------------------------------

ALL_LOSSES = ["SoftmaxCrossEntropy", "SoftmaxBinaryCrossEntropy", "SquaredError", "SigmoidBinaryCrossEntropy"]


def random_activation(rng, name):
    """A handgrad activation with random settings, and the torch function with the same settings."""
    if name == "leaky-relu":
        slope = float(rng.choice([0.0, 0.01, 0.2, 1.5]))
        return hg.LeakyReLU(slope), lambda a: F.leaky_relu(a, slope)
    if name == "elu":
        alpha = float(rng.choice([0.0, 0.5, 1.0, 2.0]))
        return hg.ELU(alpha), lambda a: F.elu(a, alpha)
    return HANDGRAD_ACTIVATIONS[name](), TORCH_ACTIVATIONS[name]


def build_mixed(seed, dtype, training):
    """A random Dense/BatchNorm/activation/Dropout network, and a torch forward for it built after handgrad's.

    Returns the model and ``torch_forward(X)``, which must be called after
    handgrad's forward pass: it reads the dropout masks handgrad drew.
    """
    rng = np.random.default_rng(seed)
    n_hidden = int(rng.integers(1, 4))
    widths = [N_FEATURES, *rng.integers(2, 7, size=n_hidden), N_CLASSES]
    layers, torch_ops = [], []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(hg.Dense(int(a), int(b), dtype=dtype))
        if i == n_hidden:
            break
        kinds = ["batchnorm", "activation", "dropout"] if rng.random() < 0.5 else ["activation", "dropout"]
        if rng.random() < 0.3:
            kinds.remove("dropout")
        if rng.random() < 0.3:
            kinds.reverse()                         # dropout or batch norm right after the Dense layer
        for kind in kinds:
            if kind == "batchnorm":
                layers.append(hg.BatchNorm(int(b), momentum=float(rng.uniform(0, 1)), eps=1e-3, dtype=dtype))
            elif kind == "dropout":
                layers.append(hg.Dropout(float(rng.choice([0.1, 0.5]))))
            else:
                name = ACTIVATION_CYCLE[(seed + i) % len(ACTIVATION_CYCLE)]
                layer, fn = random_activation(rng, name)
                layers.append(layer)
                torch_ops.append((len(layers) - 1, fn))
    model = hg.Sequential(*layers, seed=seed).train(training)
    for layer in model.layers:                      # non-trivial biases, γ, β and running statistics
        if isinstance(layer, hg.Dense):
            layer.b = 0.3 * rng.standard_normal(layer.n_out)
        elif isinstance(layer, hg.BatchNorm):
            k = layer.n_features
            layer.gamma[...] = 1 + 0.3 * rng.standard_normal(k)
            layer.beta[...] = 0.3 * rng.standard_normal(k)
            layer.running_mean[...] = 0.5 * rng.standard_normal(k)
            layer.running_var[...] = rng.uniform(0.5, 2.0, k)
    return model, dict(torch_ops)


def torch_mirror(model, activations):
    """float64 leaf tensors for every parameter (handgrad order), copies of running statistics, and a forward."""
    params = [torch.tensor(np.array(p, dtype=np.float64), requires_grad=True) for p in model.parameters()]
    running = {}
    for position, layer in enumerate(model.layers):
        if isinstance(layer, hg.BatchNorm):
            running[position] = (torch.tensor(layer.running_mean, dtype=torch.float64),
                                 torch.tensor(layer.running_var, dtype=torch.float64))

    def forward(X):
        h, index = torch.tensor(np.array(X, dtype=np.float64)), 0
        for position, layer in enumerate(model.layers):
            if isinstance(layer, hg.Dense):
                h = h @ params[index] + params[index + 1]          # handgrad's W: no transpose
                index += 2
            elif isinstance(layer, hg.BatchNorm):
                mean, var = running[position]
                h = F.batch_norm(h, mean, var, weight=params[index], bias=params[index + 1],
                                 training=layer.training, momentum=layer.momentum, eps=layer.eps)
                index += 2
            elif isinstance(layer, hg.Dropout):
                if layer.mask is not None:
                    h = h * torch.from_numpy(layer.mask * (1.0 / (1.0 - layer.p)))
            else:
                h = activations[position](h)
        return h

    return params, running, forward


def torch_loss(h, y, loss_name, reduction):
    n = h.shape[0]
    if loss_name == "SquaredError":
        total = 0.5 * ((h - torch.from_numpy(y)) ** 2).sum()
    elif loss_name == "SigmoidBinaryCrossEntropy":
        total = F.binary_cross_entropy_with_logits(h, torch.from_numpy(y), reduction="sum")
    elif loss_name == "SoftmaxCrossEntropy":
        return F.cross_entropy(h, torch.from_numpy(y), reduction=reduction)
    else:
        Y = F.one_hot(torch.from_numpy(y), N_CLASSES).double()
        s = torch.softmax(h, dim=1)
        total = -(Y * torch.log(s) + (1 - Y) * torch.log(1 - s)).sum()
    return total / n if reduction == "mean" else total


def random_targets(loss_name, rng):
    if loss_name == "SquaredError":
        return rng.standard_normal((N_SAMPLES, N_CLASSES))
    if loss_name == "SigmoidBinaryCrossEntropy":
        return rng.random((N_SAMPLES, N_CLASSES)) if rng.random() < 0.5 else \
            rng.integers(0, 2, (N_SAMPLES, N_CLASSES)).astype(float)
    return rng.integers(0, N_CLASSES, N_SAMPLES)


def mixed_case(seed, dtype):
    """One random network, loss, reduction, L2 and mode: handgrad's (J, grads) and torch's, in float64."""
    rng = np.random.default_rng(5000 + seed)
    loss_name, reduction = ALL_LOSSES[seed % 4], ["mean", "sum"][(seed // 4) % 2]
    l2, training = [0.0, 0.05][(seed // 8) % 2], seed % 3 != 2
    model, activations = build_mixed(seed, dtype, training)
    X = 1.5 * rng.standard_normal((N_SAMPLES, N_FEATURES))
    y = random_targets(loss_name, rng)
    params, running, torch_forward = torch_mirror(model, activations)
    value, grads = hg.loss_and_gradients(model, getattr(hg, loss_name)(reduction), X.astype(dtype), y, l2=l2)
    expected = torch_loss(torch_forward(X.astype(dtype)), y, loss_name, reduction)
    weights = [p for p, name in zip(params, model.parameter_names()) if name.startswith("W")]
    total = expected + 0.5 * l2 * sum((W ** 2).sum() for W in weights)
    total.backward()
    return model, value, grads, total.detach().item(), [p.grad.numpy() for p in params], running


MIXED = range(48)


@pytest.mark.parametrize("seed", MIXED)
def test_random_networks_of_new_and_old_pieces_agree_with_torch_in_float64(seed):
    model, value, grads, expected, reference, running = mixed_case(seed, np.float64)
    assert value == pytest.approx(expected, rel=1e-12)
    # As above, entries that vanish are rounding noise on both sides; here whole gradients can: a Dense bias
    # right before a training-mode BatchNorm has gradient exactly 0 (normalising removes any shift), so the
    # floor is 1e-12 of the largest entry of any gradient.
    atol = 1e-12 * max(np.abs(r).max() for r in reference)
    for name, g, r in zip(model.parameter_names(), grads, reference):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=atol, err_msg=f"{name} in {model!r}")
    for position, (mean, var) in running.items():          # running statistics move as torch's do
        np.testing.assert_allclose(model.layers[position].running_mean, mean.numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(model.layers[position].running_var, var.numpy(), rtol=1e-12)


def test_the_random_networks_cover_every_new_piece_in_both_modes():
    seen = set()
    for seed in MIXED:
        model, _ = build_mixed(seed, np.float64, seed % 3 != 2)
        for position, layer in enumerate(model.layers):
            follows_dense = position > 0 and isinstance(model.layers[position - 1], hg.Dense)
            seen.add((type(layer).__name__, layer.training))
            seen.add((type(layer).__name__, "after Dense" if follows_dense else "elsewhere"))
    for piece in ("LeakyReLU", "ELU", "Softplus", "GELU", "Dropout", "BatchNorm"):
        assert {(piece, True), (piece, False)} <= seen, piece
    for piece in ("Dropout", "BatchNorm"):
        assert {(piece, "after Dense"), (piece, "elsewhere")} <= seen, piece


def biases_before_training_batchnorm(model):
    """Names of the Dense biases whose gradient is exactly 0.

    A bias that reaches a training-mode BatchNorm through affine layers only
    (Dense, Identity) shifts each of its columns by the same amount in every
    row, which the normalisation removes.
    """
    names = dict(zip(map(id, model.parameters()), model.parameter_names()))
    vanishing = set()
    for position, layer in enumerate(model.layers):
        if not isinstance(layer, hg.Dense):
            continue
        for after in model.layers[position + 1:]:
            if isinstance(after, hg.BatchNorm) and after.training:
                vanishing.add(names[id(layer.b)])
            if not isinstance(after, (hg.Dense, hg.Identity)):
                break
    return vanishing


@pytest.mark.parametrize("seed", MIXED[::2])
def test_random_networks_in_float32_agree_with_torch_in_float64_to_float32_precision(seed):
    """float32 against the float64 truth: each gradient within 2e-5 of its norm (measured: 3e-6 at worst)."""
    model, value, grads, expected, reference, _ = mixed_case(seed, np.float32)
    assert all(g.dtype == np.float32 for g in grads)
    assert value == pytest.approx(expected, rel=1e-6)
    top = max(np.linalg.norm(r) for r in reference)
    vanishing = biases_before_training_batchnorm(model)
    for name, g, r in zip(model.parameter_names(), grads, reference):
        if name in vanishing:           # zero up to rounding: float32 rounding, on the scale of the largest gradient
            assert np.linalg.norm(g) < 1e-5 * top, name
            continue
        error = np.linalg.norm(g.astype(np.float64) - r) / np.linalg.norm(r)
        assert error < 2e-5, f"{name}: {error:.2e} in {model!r}"
