"""``Sequential``: layers applied in order, parameters kept in one flat buffer.

All parameters of a model live in one contiguous vector (and their gradients
in another); each layer's ``W`` and ``b`` are views into it.  An optimizer can
then update the whole model in a handful of vectorised operations, and L2
decay touches one slice: the weight matrices come first in the buffer, the
biases after them.  ``parameters()`` still returns one array per parameter, in
layer order (``W₁, b₁, W₂, b₂, …``), and writing into them changes the model.
"""

from contextlib import contextmanager

import numpy as np

from handgrad.errors import HandgradError
from handgrad.nn.activations import activation as activation_class
from handgrad.nn.layers import Dense, Layer, layer_from_config
from handgrad.nn.losses import softmax
from handgrad.registry import LAYERS
from handgrad.validation import check_features, resolve_dtype

# Rows per forward pass when predicting or evaluating: bounds the activations'
# memory (4096 rows x 512 units x 4 bytes = 8 MB per layer) on any data size.
PREDICT_BATCH_SIZE = 4096

# Purpose tag of the mask generators a model seeds at construction (fit reseeds per epoch).
_MASKS = 2


class Sequential:
    """A feed-forward network: ``model(X)`` returns the logits.

    The model asks its layers (the protocol of :class:`~handgrad.Layer`)
    and knows no layer class.  At construction it computes every width once
    (``widths``: ``widths[i]`` columns go into layer ``i``, ``widths[i + 1]``
    come out; ``n_features`` and ``n_outputs`` are the ends), refuses a
    layer that cannot take the width before it, and calls each layer's
    ``initialize`` once.  It needs one layer that fixes the input width and
    one that declares the dtype (a Dense layer does both).

    ``seed`` seeds the initialisation: layer ``i`` draws from the ``i``-th
    child of ``SeedSequence(seed)`` (a Dense built with ``init="auto"`` and
    a seed of its own draws from that seed), for the scheme that the first
    following layer declaring an ``initializer`` asks for (He for the ReLU
    family, Glorot otherwise).

    Each layer object may appear once: a layer keeps what its forward pass
    saw for its backward pass, so one object in two places would hand the
    first place's backward the second place's inputs.

    Modes.  A model starts in training mode, as in PyTorch; ``train()`` and
    ``eval()`` set every layer's mode.  ``model(X)``, ``forward`` and
    ``hg.loss_and_gradients`` use the current mode; ``predict``,
    ``predict_proba`` and ``hg.evaluate`` always use inference behaviour and
    leave the mode as they found it; ``hg.fit`` trains in training mode and
    leaves the model in inference mode.  Only Dropout and BatchNorm behave
    differently in the two modes.
    """

    def __init__(self, *layers, seed=None):
        if not layers:
            raise HandgradError("Sequential needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise HandgradError(f"{layer!r} is not a handgrad layer; derive custom layers from hg.Layer")
        _refuse_shared(layers)
        self.layers = list(layers)
        self.dtype = _shared_dtype(layers)
        self.widths = _widths(layers)
        self.n_features, self.n_outputs = self.widths[0], self.widths[-1]
        # Per-position decisions, taken once: forward and backward only read them.
        self._overwrites = [i > 0 and layer.in_place and not layers[i - 1].backward_reads_output
                            for i, layer in enumerate(layers)]
        self._skips_data_gradient = layers[0].input_grad_optional
        self._initialize(seed)
        self._pack()
        self._workspace = {}
        self.reseed(*(() if seed is None else (seed, _MASKS)))

    def _initialize(self, seed):
        """Each layer's one ``initialize``, from its own child of ``SeedSequence(seed)``."""
        seeds = np.random.SeedSequence(seed).spawn(len(self.layers))
        for i, layer in enumerate(self.layers):
            layer.initialize(np.random.default_rng(seeds[i]), _initializer_after(self.layers[i + 1:]))

    @property
    def layer_sizes(self):
        """``[n_features, …, n_outputs]``: the input width, then the width each layer that sets one outputs.

        The sizes the seeds give a network (``64-128-10``): a Dense layer
        sets its width; BatchNorm, Dropout and the activations keep theirs.
        """
        return [self.widths[0]] + [self.widths[i + 1] for i, layer in enumerate(self.layers) if _sets_width(layer)]

    def _pack(self):
        """Move every parameter (and gradient) into one flat buffer, decayed ones first."""
        entries = [(layer, name) for layer in self.layers for name in layer.parameter_names]
        order = sorted(entries, key=lambda e: e[1] not in e[0].decayed_names)
        sizes = [getattr(layer, name).size for layer, name in order]
        self.flat_parameters = np.empty(sum(sizes), dtype=self.dtype)
        self.flat_gradients = np.zeros(sum(sizes), dtype=self.dtype)
        self.n_decayed = sum(size for (layer, name), size in zip(order, sizes) if name in layer.decayed_names)
        offset = 0
        for (layer, name), size in zip(order, sizes):
            old = getattr(layer, name)
            view = self.flat_parameters[offset:offset + size].reshape(old.shape)
            view[...] = old
            grad = self.flat_gradients[offset:offset + size].reshape(old.shape)
            layer.bind_parameter(name, view, grad)
            offset += size

    # -- the public contract -------------------------------------------------

    def parameters(self):
        """Parameter arrays in layer order (each Dense: ``W`` then ``b``)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self):
        """Gradient arrays matching ``parameters()``, filled by ``backward``."""
        return [g for layer in self.layers for g in layer.gradients()]

    def parameter_names(self):
        """``W1, b1, W2, …``: names matching ``parameters()`` (see :func:`stored_arrays`)."""
        return [name for name, _, _, is_buffer in self._stored_arrays() if not is_buffer]

    def _stored_arrays(self):
        """:func:`stored_arrays` of this model: it reads only each layer's type, so no configuration is built
        (building one inspects every constructor, which a training loop should not pay for each epoch)."""
        return stored_arrays([{"type": type(layer).__name__} for layer in self.layers])

    def state_arrays(self):
        """``{name: array}`` of everything a model file stores: parameters, then each layer's buffers.

        Buffers (``Layer.buffer_names``) are state not trained by gradient,
        such as a batch norm's running statistics.
        """
        return {name: getattr(self.layers[position], attribute)
                for name, position, attribute, _ in self._stored_arrays()}

    # -- modes and randomness ---------------------------------------------------

    def train(self, mode=True):
        """Put every layer in training mode (``mode=False``: inference mode); returns the model."""
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self):
        """Put every layer in inference mode; returns the model."""
        return self.train(False)

    @property
    def training(self):
        """True when any layer is in training mode."""
        return any(layer.training for layer in self.layers)

    @contextmanager
    def inference(self):
        """``with model.inference():`` runs in inference mode, then restores each layer's mode."""
        modes = [layer.training for layer in self.layers]
        self.eval()
        try:
            yield self
        finally:
            for layer, mode in zip(self.layers, modes):
                layer.train(mode)

    def reseed(self, *entropy):
        """Reseed every layer that draws random numbers (Dropout) from ``entropy`` (ints) and its position.

        ``reseed()`` with no arguments draws fresh entropy from the system.
        """
        if all(type(layer).reseed is Layer.reseed for layer in self.layers):
            return                              # nothing draws random numbers: spare the spawning
        sequences = np.random.SeedSequence(list(entropy) if entropy else None).spawn(len(self.layers))
        for layer, sequence in zip(self.layers, sequences):
            layer.reseed(sequence)

    def release(self):
        """Drop the reused work buffers and what each layer kept of its last forward pass.

        After training on a large batch (L-BFGS sees the whole training set
        at once) these hold arrays as large as the data; they are rebuilt,
        at the size needed, by the next forward pass.
        """
        self._workspace = {}
        probe = np.zeros((1, self.n_features), dtype=self.dtype)
        with self.inference():
            self.forward(probe)                # every layer now keeps a one-row input
        self._workspace = {}

    def get_buffers(self):
        """Copies of every layer's buffers (a batch norm's running statistics), by stored name."""
        return {name: getattr(self.layers[position], attribute).copy()
                for name, position, attribute, is_buffer in self._stored_arrays() if is_buffer}

    def set_buffers(self, buffers):
        """Write buffers saved by :meth:`get_buffers` back into the layers (in place)."""
        for name, position, attribute, is_buffer in self._stored_arrays():
            if is_buffer:
                getattr(self.layers[position], attribute)[...] = buffers[name]

    # -- prediction ------------------------------------------------------------

    def __call__(self, X):
        """Logits for ``X`` (a fresh array), in the current mode."""
        X = check_features(X, self.dtype, self.n_features)
        return self.forward(X).copy()

    def predict_proba(self, X, batch_size=PREDICT_BATCH_SIZE, loss=None):
        """Probabilities, in inference mode, computed in chunks of rows.

        ``softmax(logits)`` for classification; with ``loss=`` whatever that
        loss reads its logits as (``σ(logits)`` per label for
        :class:`~handgrad.SigmoidBinaryCrossEntropy`).
        """
        X = check_features(X, self.dtype, self.n_features)
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        with self.inference():
            for start in range(0, X.shape[0], batch_size):
                stop = start + batch_size
                logits = self.forward(X[start:stop])
                if loss is None:
                    softmax(logits, out=out[start:stop])
                else:
                    out[start:stop] = loss.probabilities(logits)
        return out

    def predict(self, X, batch_size=PREDICT_BATCH_SIZE, loss=None):
        """Predictions in inference mode: the index of the largest logit for each row.

        With ``loss=``, that loss's predictions (``loss.predict(logits)``):
        the logits themselves for :class:`~handgrad.SquaredError`, 0/1 labels
        (``σ(z) > ½``) for :class:`~handgrad.SigmoidBinaryCrossEntropy`.
        """
        X = check_features(X, self.dtype, self.n_features)
        chunks = range(0, X.shape[0], batch_size)
        with self.inference():
            if loss is not None:       # copies: forward's buffer is reused by the next chunk
                return np.concatenate([loss.predict(self.forward(X[i:i + batch_size])).copy() for i in chunks])
            labels = np.empty(X.shape[0], dtype=np.intp)
            for start in chunks:
                labels[start:start + batch_size] = self.forward(X[start:start + batch_size]).argmax(axis=1)
        return labels

    # -- forward and backward through the layers -----------------------------

    def forward(self, X):
        """Logits for an already-checked ``X``, written into reused buffers.

        The result is overwritten by the next ``forward``; copy it to keep it.
        An ``in_place`` layer (an elementwise activation) after a layer whose
        backward never reads its output (``backward_reads_output = False``,
        as Dense) writes over that output: the pre-activation is never read
        again, and one buffer fewer per layer keeps a minibatch's activations
        in cache.
        """
        A = X
        for i, layer in enumerate(self.layers):
            if self._overwrites[i]:
                A = layer.forward(A, out=A)
            else:
                A = layer.forward(A, out=self._buffer(("forward", i), A.shape[0], self.widths[i + 1]))
        return A

    def backward(self, G):
        """Backpropagate ``G = ∂L/∂logits``; fills ``gradients()``.

        The first layer's input gradient is skipped when the layer allows it
        (``input_grad_optional``, as Dense): it would be the gradient with
        respect to the data.
        """
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if i == 0 and self._skips_data_gradient:
                layer.backward(G, input_grad=False)
                return
            out = self._buffer(("backward", i), G.shape[0], self.widths[i])
            G = layer.backward(G, out=out)

    def _buffer(self, key, n, width):
        """A reused ``n × width`` array for a layer's output (forward) or input gradient (backward).

        Each buffer keeps the most rows any batch has needed and hands out its
        first ``n`` rows (a contiguous view), so the short last batch of an
        epoch or of ``predict`` does not reallocate anything.
        """
        buf = self._workspace.get(key)
        if buf is None or buf.shape[0] < n or buf.shape[1] != width:
            buf = np.empty((n, width), dtype=self.dtype)
            self._workspace[key] = buf
        return buf[:n]

    # -- weights as one vector, configuration ---------------------------------

    def get_weights(self):
        """A copy of all parameters as one flat vector."""
        return self.flat_parameters.copy()

    def set_weights(self, flat):
        """Overwrite all parameters from a vector made by ``get_weights``."""
        flat = np.asarray(flat)
        if flat.shape != self.flat_parameters.shape:
            raise HandgradError(f"weights vector has shape {flat.shape}, this model needs {self.flat_parameters.shape}")
        self.flat_parameters[...] = flat

    def config(self):
        return [layer.config() for layer in self.layers]

    @classmethod
    def from_config(cls, config, dtype=np.float32):
        if not isinstance(config, list) or not config:
            raise HandgradError("a model configuration is a non-empty list of layers")
        return cls(*(layer_from_config(c, resolve_dtype(dtype)) for c in config))

    def astype(self, dtype):
        """A copy of this model with parameters (and buffers) in ``dtype``; every layer's settings kept."""
        clone = Sequential.from_config(self.config(), dtype)
        for original, copy in zip(self.layers, clone.layers):
            copy.train(original.training)
        for _name, position, attribute, is_buffer in stored_arrays(self.config()):
            value = getattr(self.layers[position], attribute)
            if is_buffer:
                setattr(clone.layers[position], attribute, np.array(value, dtype=clone.dtype))
            else:
                getattr(clone.layers[position], attribute)[...] = value
        return clone

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential({inner})"


def stored_arrays(config):
    """``(name, layer position, attribute, is_buffer)`` of each array a model stores, in file order.

    Parameters are numbered by parameterised layer, as the seeds number their
    weights (``W1, b1, W2, b2, …``); buffers follow, numbered the same way
    (``running_mean2``).
    """
    parameters, buffers, index = [], [], 0
    for position, layer in enumerate(config):
        cls = LAYERS.get(layer["type"])
        if cls.parameter_names or cls.buffer_names:
            index += 1
        parameters.extend((f"{name}{index}", position, name, False) for name in cls.parameter_names)
        buffers.extend((f"{name}{index}", position, name, True) for name in cls.buffer_names)
    return parameters + buffers


def _shared_dtype(layers):
    """The one dtype the layers declare (``Layer.dtype``); a mix, or none at all, is refused."""
    dtypes = {resolve_dtype(layer.dtype) for layer in layers if layer.dtype is not None}
    if len(dtypes) > 1:
        raise HandgradError("all layers with parameters (Dense, BatchNorm) must share one dtype; "
                            "build them with the same dtype=")
    if not dtypes:
        raise HandgradError(f"Sequential needs at least one Dense layer, or another layer that declares its dtype "
                            f"(hg.Layer.dtype); {_names(layers)} declare none")
    return dtypes.pop()


def _widths(layers):
    """``[n_features, width after layer 1, …, n_outputs]``, each layer asked in turn.

    ``n_features`` is the width the first layer that fixes one requires; a
    layer that cannot take the width before it is refused with its own
    reason, naming the last layer that set that width.
    """
    n_features = next((w for w in (layer.input_width() for layer in layers) if w is not None), None)
    if n_features is None:
        raise HandgradError(f"Sequential needs at least one Dense layer, or another layer that fixes its input "
                            f"width (hg.Layer.input_width); {_names(layers)} take any width")
    widths, source = [n_features], None
    for layer in layers:
        width = widths[-1]
        problem = layer.width_problem(width)
        if problem:
            origin = f"{source!r} outputs" if source is not None else "the input has"
            raise HandgradError(f"{origin} {width} features but the next {layer!r} {problem}")
        widths.append(layer.output_width(width))
        if layer.input_width() is not None or widths[-1] != width:
            source = layer
    return widths


def _names(layers):
    return ", ".join(repr(layer) for layer in layers)


def _sets_width(layer):
    """True for a layer that states its own output width (overrides ``output_width``), as Dense."""
    return type(layer).output_width is not Layer.output_width


def _draws_parameters(layer):
    """True for a layer that draws its own initial parameters (overrides ``initialize``), as Dense."""
    return type(layer).initialize is not Layer.initialize


def _refuse_shared(layers):
    seen = {}
    for position, layer in enumerate(layers):
        if id(layer) in seen:
            raise HandgradError(f"the same {type(layer).__name__} object is at positions {seen[id(layer)]} and "
                                f"{position}; a layer remembers its own forward pass, so build one per position "
                                f"(e.g. hg.{type(layer).__name__}() each time)")
        seen[id(layer)] = position


def _initializer_after(followers):
    """The scheme asked for by the first following layer that declares one, before the next layer that draws
    its own parameters; Glorot by default."""
    for layer in followers:
        if _draws_parameters(layer):
            break
        if layer.initializer is not None:
            return layer.initializer
    return "glorot"


def mlp(n_features, hidden, n_classes, activation="relu", dtype=np.float32, seed=None):
    """``Sequential(Dense, act, …, Dense)`` with the given hidden widths."""
    act = activation_class(activation)
    widths = [n_features, *hidden, n_classes]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(Dense(a, b, dtype=dtype))
        if i < len(widths) - 2:
            layers.append(act())
    return Sequential(*layers, seed=seed)
