"""``Sequential``: layers applied in order, parameters kept in one flat buffer.

All parameters of a model live in one contiguous vector (and their gradients
in another); each layer's ``W`` and ``b`` are views into it.  An optimizer can
then update the whole model in a handful of vectorised operations, and L2
decay touches one slice: the weight matrices come first in the buffer, the
biases after them.  ``parameters()`` still returns one array per parameter, in
layer order (``W₁, b₁, W₂, b₂, …``), and writing into them changes the model.

Devices.  A model computes where its parameters are: on NumPy until
:meth:`Sequential.to` moves them to another array API namespace and device
(a GPU through PyTorch or CuPy).  The flat buffers move as a whole, each
layer gets views of the moved ones, and every layer computes with the ops
of the new namespace (:mod:`handgrad.arrays`).
"""

import math
from contextlib import contextmanager

import numpy as np

from handgrad import _compiled
from handgrad.arrays import NUMPY, ops_for, to_numpy
from handgrad.errors import DataError, HandgradError
from handgrad.nn.activations import activation as activation_class
from handgrad.nn.layers import Dense, Layer, layer_from_config
from handgrad.nn.losses import softmax
from handgrad.registry import LAYERS
from handgrad.validation import check_features, is_sparse, resolve_dtype

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

    Devices.  A model starts on NumPy; :meth:`to` moves it to another array
    API namespace and device once (``model.to(torch, "cuda")``), and
    ``namespace``, ``device`` and ``ops`` say where it is.  Data given in
    another namespace is copied to the model's (once per call of ``fit``,
    ``predict``, …), and predictions come back in the namespace and on the
    device of the input: ``model.predict(X_numpy)`` returns NumPy labels
    from a model on a GPU.  What a model hands out for files and snapshots
    (``get_weights``, ``get_buffers``) is always on the host, in NumPy.

    Parameters
    ----------
    *layers : Layer
        The layers, in order; at least one, each object once.
    seed : int, optional
        Seeds the initialisation and the layers' random masks; None draws fresh entropy.

    Raises
    ------
    HandgradError
        No layer, an object that is not a :class:`Layer`, one layer object
        in two places, layers whose widths or dtypes do not fit together,
        or no layer that fixes the input width or declares the dtype.

    See Also
    --------
    mlp : Builds a Sequential of Dense layers and activations.
    fit : Trains a model.
    save : Writes a model to a file.

    Examples
    --------
    >>> model = hg.Sequential(hg.Dense(4, 8), hg.ReLU(), hg.Dense(8, 3), seed=0)
    >>> model
    Sequential(Dense(4, 8), ReLU(), Dense(8, 3))
    >>> model.layer_sizes, model.n_features, model.n_outputs, model.flat_parameters.size
    ([4, 8, 3], 4, 3, 67)
    >>> X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    >>> model(X).shape, model.predict(X).shape, np.allclose(model.predict_proba(X).sum(axis=1), 1)
    ((5, 3), (5,), True)
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
        self._plans = _dense_plans(layers, self._overwrites)
        self._fuses = any(self._plans)
        self._compiled_choice = None
        self.ops = NUMPY
        for layer in layers:
            if layer.ops is not NUMPY:      # a layer moved on its own: a new model starts on NumPy
                layer.place(NUMPY)
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
        shapes = [tuple(getattr(layer, name).shape) for layer, name in order]
        sizes = [math.prod(shape) for shape in shapes]
        starts = np.cumsum([0] + sizes[:-1]).tolist()
        self._slots = [(layer, name, start, shape) for (layer, name), start, shape in zip(order, starts, shapes)]
        self.n_decayed = sum(size for (layer, name), size in zip(order, sizes) if name in layer.decayed_names)
        flat = np.empty(sum(sizes), dtype=self.dtype)
        for layer, name, start, shape in self._slots:
            flat[start:start + math.prod(shape)] = np.reshape(to_numpy(getattr(layer, name)), -1)
        self._bind(flat, np.zeros(sum(sizes), dtype=self.dtype))

    def _bind(self, flat_parameters, flat_gradients):
        """Make these the model's flat vectors and every parameter (and gradient) a view of its slice."""
        ops = ops_for(flat_parameters)
        for layer, name, start, shape in self._slots:
            stop = start + math.prod(shape)
            layer.bind_parameter(name, ops.reshape(flat_parameters[start:stop], shape),
                                 ops.reshape(flat_gradients[start:stop], shape))
        self.flat_parameters, self.flat_gradients = flat_parameters, flat_gradients

    # -- where the model computes ---------------------------------------------

    def to(self, target, device=None):
        """Move the model to ``target``'s array namespace (and ``device``), once; return the model.

        Parameters
        ----------
        target : array, namespace module or ops
            Where to compute: an array (its namespace and device), a
            namespace (``torch``, ``cupy``, ``array_api_strict``, ``numpy``),
            as :func:`handgrad.arrays.ops_for` reads it.
        device : optional
            A device in the namespace's own terms (``"cuda"``, ``"cuda:1"``,
            ``"mps"``); default: the array's, or the namespace's default.

        Returns
        -------
        Sequential
            The model itself, now computing there: its flat parameter and
            gradient vectors, its layers' buffers (running statistics) and
            every later work buffer live on the device.  Moving to where
            the model is already costs nothing.

        Raises
        ------
        HandgradError
            A namespace whose slices are not writable views, or a device
            without the model's dtype (float64 on Apple's MPS).

        Examples
        --------
        >>> import numpy as np, handgrad as hg
        >>> model = hg.mlp(4, [8], 3, seed=0).to(np)
        >>> model.device
        'cpu'
        """
        ops = ops_for(target, device)
        if ops is self.ops:
            return self
        ops.dtype(self.dtype)               # refuses a device without the model's dtype, before anything moves
        self._bind(ops.asarray(self.flat_parameters, copy=True), ops.asarray(self.flat_gradients, copy=True))
        for layer in self.layers:
            layer.place(ops)
        self.ops = ops
        self._workspace = {}
        return self

    @property
    def namespace(self):
        """The array namespace the model computes in (``numpy``, ``array_api_compat.torch``, …)."""
        return self.ops.xp

    @property
    def device(self):
        """The device the model computes on, as its namespace names it (``"cpu"`` for NumPy)."""
        return self.ops.device

    def placed(self, X):
        """Checked input ``X`` in the model's namespace and on its device: itself when it is there already.

        A SciPy sparse ``X`` stays sparse, for a model on NumPy only.
        """
        if is_sparse(X):
            if not self.ops.is_numpy:
                raise DataError(f"sparse input is multiplied by NumPy models only; this one computes on "
                                f"{self.ops.name} ({self.device}): pass a dense X, or keep the model on NumPy")
            return X
        return self.ops.asarray(X)

    def _returned(self, result, like):
        """``result`` (a fresh array of the model's) in the namespace and on the device of the input ``like``."""
        ops = ops_for(like)
        return result if ops is self.ops else ops.asarray(result)

    def prepare(self, compiled=None):
        """Choose whether ``forward`` and ``backward`` run each Dense layer and the activation after it through
        handgrad's compiled kernels (:mod:`handgrad._compiled`); ``hg.fit(..., compiled=)`` calls it.

        With the kernels, a Dense layer computes only its products (``X W``;
        ``Xᵀ G`` and ``G Wᵀ``); one kernel adds ``b`` and applies the
        activation after it, and on the way back one kernel applies the
        activation's backward and sums ``db``.  The activation's part only
        where that pays: the forwards of Identity, ReLU and LeakyReLU, the
        backwards of all but Softplus and GELU; otherwise the kernel adds
        ``b`` (or sums ``db``) alone and the activation runs its own code.
        Each gives the NumPy code's values bit for bit, and each layer keeps
        what its own forward keeps, so either path may follow the other.
        They run on NumPy arrays only: on another namespace the layers' own
        calls run.

        Parameters
        ----------
        compiled : {None, True, False}
            None (automatic): the kernels whenever handgrad was built with
            them and ``HANDGRAD_NO_COMPILED`` is not set.  True: the kernels,
            or an error.  False: NumPy only.

        Returns
        -------
        bool
            Whether any pair of this model will run through the kernels.
        """
        _compiled.check_compiled(compiled)
        kernels = _compiled.for_run(compiled)
        self._compiled_choice = compiled
        self._plans = _dense_plans(self.layers, self._overwrites)     # a layer may have been given hooks since
        self._fuses = any(self._plans)
        return kernels is not None and self.ops is NUMPY and self._fuses

    def _layer_kernels(self):
        """The kernels for the fused pairs, or None when the layers' own calls run."""
        if not self._fuses or self.ops is not NUMPY:
            return None
        return _compiled.for_run(self._compiled_choice)

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
        (building one inspects every constructor, which a training loop should not pay for each epoch), and
        it is worked out once: the training loop snapshots the buffers every epoch."""
        types = tuple(type(layer) for layer in self.layers)
        cached = self.__dict__.get("_stored")
        if cached is None or cached[0] != types:
            cached = self._stored = (types, stored_arrays([{"type": cls.__name__} for cls in types]))
        return cached[1]

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
        probe = self.ops.zeros((1, self.n_features), dtype=self.dtype)
        with self.inference():
            self.forward(probe)                # every layer now keeps a one-row input
        self._workspace = {}

    def get_buffers(self):
        """Copies of every layer's buffers (a batch norm's running statistics), by stored name, on the host."""
        return {name: to_numpy(getattr(self.layers[position], attribute), copy=True)
                for name, position, attribute, is_buffer in self._stored_arrays() if is_buffer}

    def set_buffers(self, buffers):
        """Write buffers saved by :meth:`get_buffers` back into the layers (in place)."""
        for name, position, attribute, is_buffer in self._stored_arrays():
            if is_buffer:
                self.ops.copyto(getattr(self.layers[position], attribute), buffers[name])

    # -- prediction ------------------------------------------------------------

    def __call__(self, X):
        """Logits for ``X`` (a fresh array, in ``X``'s namespace), in the current mode."""
        X = check_features(X, self.dtype, self.n_features)
        return self._returned(self.ops.copy(self.forward(self.placed(X))), X)

    def predict_proba(self, X, batch_size=PREDICT_BATCH_SIZE, loss=None):
        """Probabilities, in inference mode, computed in chunks of rows (returned in ``X``'s namespace).

        ``softmax(logits)`` for classification; with ``loss=`` whatever that
        loss reads its logits as (``σ(logits)`` per label for
        :class:`~handgrad.SigmoidBinaryCrossEntropy`).

        Parameters
        ----------
        X : array of shape (n, n_features), or a SciPy sparse matrix or array
            The inputs, one sample per row, in any array API namespace.
        batch_size : int, default 4096
            Rows per forward pass: bounds the memory the activations take.
        loss : Loss, optional
            Reads the logits (:meth:`Loss.probabilities`); softmax when None.

        Returns
        -------
        array of shape (n, n_outputs)
            The probabilities, in ``X``'s namespace and on its device.

        Raises
        ------
        DataError
            ``X`` is not a finite 2-D array with ``n_features`` columns.
        HandgradError
            ``loss`` is a regression loss, which has no probabilities.
        """
        X = check_features(X, self.dtype, self.n_features)
        rows = self.placed(X)
        out = self.ops.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        with self.inference():
            for start in range(0, X.shape[0], batch_size):
                stop = min(start + batch_size, X.shape[0])     # the standard has no slices past the end
                logits = self.forward(rows[start:stop, ...])
                if loss is None:
                    softmax(logits, out=out[start:stop, ...])
                else:
                    out[start:stop, ...] = loss.probabilities(logits)
        return self._returned(out, X)

    def predict(self, X, batch_size=PREDICT_BATCH_SIZE, loss=None):
        """Predictions in inference mode: the index of the largest logit for each row (in ``X``'s namespace).

        With ``loss=``, that loss's predictions (``loss.predict(logits)``):
        the logits themselves for :class:`~handgrad.SquaredError`, 0/1 labels
        (``σ(z) > ½``) for :class:`~handgrad.SigmoidBinaryCrossEntropy`.

        Parameters
        ----------
        X : array of shape (n, n_features), or a SciPy sparse matrix or array
            The inputs, one sample per row, in any array API namespace.
        batch_size : int, default 4096
            Rows per forward pass: bounds the memory the activations take.
        loss : Loss, optional
            Reads the logits (:meth:`Loss.predict`); the largest logit's index when None.

        Returns
        -------
        array
            Class indices of shape (n,), or ``loss``'s predictions, in
            ``X``'s namespace and on its device.

        Raises
        ------
        DataError
            ``X`` is not a finite 2-D array with ``n_features`` columns.
        """
        X = check_features(X, self.dtype, self.n_features)
        rows, ops, n = self.placed(X), self.ops, X.shape[0]
        chunks = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
        with self.inference():
            if loss is not None:       # copies: forward's buffer is reused by the next chunk
                return self._returned(ops.concat([ops.copy(loss.predict(self.forward(rows[start:stop, ...])))
                                                  for start, stop in chunks]), X)
            labels = ops.empty(n, dtype=np.intp)
            for start, stop in chunks:
                labels[start:stop] = ops.argmax(self.forward(rows[start:stop, ...]), axis=1)
        return self._returned(labels, X)

    # -- forward and backward through the layers -----------------------------

    def forward(self, X):
        """Logits for an already-checked ``X``, written into reused buffers.

        The result is overwritten by the next ``forward``; copy it to keep it.
        An ``in_place`` layer (an elementwise activation) after a layer whose
        backward never reads its output (``backward_reads_output = False``,
        as Dense) writes over that output: the pre-activation is never read
        again, and one buffer fewer per layer keeps a minibatch's activations
        in cache.

        Parameters
        ----------
        X : array of shape (n, n_features)
            Checked inputs in the model's namespace (:meth:`placed`), or a SciPy sparse matrix.

        Returns
        -------
        array of shape (n, n_outputs)
            The logits, in a buffer the next ``forward`` reuses.
        """
        kernels = self._layer_kernels()
        if kernels is not None:
            return self._forward_fused(X, kernels)
        A = X
        for i in range(len(self.layers)):
            A = self._layer_forward(i, A)
        return A

    def _layer_forward(self, i, A):
        layer = self.layers[i]
        if self._overwrites[i]:
            return layer.forward(A, out=A)
        return layer.forward(A, out=self._buffer(("forward", i), A.shape[0], self.widths[i + 1]))

    def _forward_fused(self, X, kernels):
        """:meth:`forward` with each handgrad Dense layer run as its product and one kernel (see :meth:`prepare`)."""
        A, i, n = X, 0, len(self.layers)
        while i < n:
            plan = self._plans[i]
            if plan is None:
                A = self._layer_forward(i, A)
                i += 1
                continue
            A = plan.forward(kernels, A, self._buffer(("forward", i), A.shape[0], self.widths[i + 1]))
            i += 2 if plan.fuses_forward else 1
        return A

    def backward(self, G):
        """Backpropagate ``G = ∂L/∂logits``; fills ``gradients()``.

        The first layer's input gradient is skipped when the layer allows it
        (``input_grad_optional``, as Dense): it would be the gradient with
        respect to the data.

        Parameters
        ----------
        G : array of shape (n, n_outputs)
            ``∂L/∂Z``, the gradient with respect to the logits of the last ``forward``.

        Examples
        --------
        >>> model = hg.Sequential(hg.Dense(3, 2, seed=0, dtype=np.float64))
        >>> loss = hg.SquaredError(reduction="sum")
        >>> X, y = np.ones((4, 3)), np.zeros((4, 2))
        >>> value = loss.forward(model.forward(X), y)
        >>> model.backward(loss.backward())                 # fills model.gradients()
        >>> np.allclose(model.gradients()[0], X.T @ (model.forward(X) - y))
        True
        """
        kernels = self._layer_kernels()
        if kernels is not None:
            self._backward_fused(G, kernels)
            return
        for i in range(len(self.layers) - 1, -1, -1):
            G = self._layer_backward(i, G)

    def _layer_backward(self, i, G):
        layer = self.layers[i]
        if i == 0 and self._skips_data_gradient:
            return layer.backward(G, input_grad=False)
        return layer.backward(G, out=self._buffer(("backward", i), G.shape[0], self.widths[i]))

    def _backward_fused(self, G, kernels):
        """:meth:`backward` with each handgrad Dense layer's ``db`` summed by a kernel, in the same pass as the
        activation's backward after it where that pays (see :meth:`prepare`)."""
        i = len(self.layers) - 1
        while i >= 0:
            plan = self._plans[i - 1] if i > 0 else None
            if plan is not None and plan.fuses_backward and self._kernel_takes(G):
                G = plan.activation_backward(kernels, G, self._buffer(("backward", i), G.shape[0], self.widths[i]))
                i -= 1
            elif self._plans[i] is not None and self._kernel_takes(G):
                self._plans[i].bias_gradient(kernels, G, self._buffer(("bias gradient", i), G.shape[0],
                                                                      self.widths[i + 1]))
            else:
                G = self._layer_backward(i, G)
                i -= 1
                continue
            dense = self.layers[i]          # db is done: the products remain
            if i == 0 and self._skips_data_gradient:
                dense.backward_products(G, input_grad=False)
                return
            G = dense.backward_products(G, out=self._buffer(("backward", i), G.shape[0], self.widths[i]))
            i -= 1

    def _kernel_takes(self, G):
        """Whether ``G`` is an array the kernels take: NumPy, C-contiguous, in the model's dtype (a caller of
        ``backward``, or a layer of one's own, may hand another)."""
        return type(G) is np.ndarray and G.dtype == self.dtype and G.flags.c_contiguous

    def _buffer(self, key, n, width):
        """A reused ``n × width`` array for a layer's output (forward) or input gradient (backward).

        Each buffer keeps the most rows any batch has needed and hands out its
        first ``n`` rows (a contiguous view), so the short last batch of an
        epoch or of ``predict`` does not reallocate anything.  The view of the
        last ``n`` asked for is kept too: a step asks for the same ones again.
        """
        entry = self._workspace.get(key)
        if entry is not None and entry[1] == n:
            return entry[2]
        buf = None if entry is None else entry[0]
        if buf is None or buf.shape[0] < n or buf.shape[1] != width:
            buf = self.ops.empty((n, width), dtype=self.dtype)
        view = buf[:n, ...]
        self._workspace[key] = (buf, n, view)
        return view

    # -- weights as one vector, configuration ---------------------------------

    def get_weights(self):
        """A copy of all parameters as one flat NumPy vector, on the host wherever the model computes."""
        return to_numpy(self.flat_parameters, copy=True)

    def set_weights(self, flat):
        """Overwrite all parameters from a vector made by ``get_weights`` (of any namespace)."""
        flat = self.ops.asarray(flat)
        if tuple(flat.shape) != tuple(self.flat_parameters.shape):
            raise HandgradError(f"weights vector has shape {tuple(flat.shape)}, this model needs "
                                f"{tuple(self.flat_parameters.shape)}")
        self.ops.copyto(self.flat_parameters, flat)

    def config(self):
        return [layer.config() for layer in self.layers]

    @classmethod
    def from_config(cls, config, dtype=np.float32):
        if not isinstance(config, list) or not config:
            raise HandgradError("a model configuration is a non-empty list of layers")
        return cls(*(layer_from_config(c, resolve_dtype(dtype)) for c in config))

    def astype(self, dtype):
        """A copy of this model with parameters (and buffers) in ``dtype``, where this one computes; every
        layer's settings kept."""
        clone = Sequential.from_config(self.config(), dtype)
        for original, copy in zip(self.layers, clone.layers):
            copy.train(original.training)
        for _name, position, attribute, is_buffer in stored_arrays(self.config()):
            value = to_numpy(getattr(self.layers[position], attribute))
            if is_buffer:
                setattr(clone.layers[position], attribute, np.array(value, dtype=clone.dtype))
            else:
                getattr(clone.layers[position], attribute)[...] = value
        return clone.to(self.ops)

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


class _DensePlan:
    """A handgrad Dense layer, and the handgrad activation after it (or None), as the compiled kernels run them.

    Forward: Dense's product, then ``bias_activation`` adds ``b`` in place
    and, where ``fuses_forward``, applies the activation there too (it
    writes over Dense's output, as :class:`Sequential` lets it); otherwise
    the activation runs its own forward next.  Backward, where
    ``fuses_backward``: ``activation_gradient_bias`` applies the
    activation's backward and sums Dense's ``db = Σ_rows`` in one pass;
    otherwise (no activation, or one whose fused backward does not pay) the
    kernel sums ``db`` alone.  Dense's products follow.  The activation
    keeps ``A`` as its own forward keeps it, so its own backward may follow
    a fused forward, and the reverse.
    """

    __slots__ = ("dense", "activation", "kind", "parameter_name", "keeps_output", "fuses_forward", "fuses_backward")

    # Up to this many entries of G, db is summed by the Identity kernel into a scratch copy of G: faster than
    # NumPy's column sum for a network's last layers (0.3 against 2.1 µs at 32 × 10, 2.9 against 5.2 at 128 ×
    # 128), slower where the copy dominates (36 against 17 µs at 128 × 1024, float32).
    BIAS_GRADIENT_KERNEL_SIZE = 16384

    def __init__(self, dense, activation, fuses_forward, fuses_backward):
        self.dense, self.activation = dense, activation
        self.kind = _compiled.activation_kind(activation)[0] if activation is not None else _IDENTITY
        self.parameter_name = None if activation is None else _compiled.ACTIVATIONS[type(activation).__name__][1]
        self.keeps_output = activation is not None and type(activation).__name__ != "Identity"
        self.fuses_forward, self.fuses_backward = fuses_forward, fuses_backward

    def parameter(self):
        """LeakyReLU's slope or ELU's α, read now (a setting may change between steps), else 0."""
        return 0.0 if self.parameter_name is None else float(getattr(self.activation, self.parameter_name))

    def forward(self, kernels, X, Z):
        self.dense.product(X, out=Z)
        if not self.fuses_forward:
            kernels.bias_activation(Z, self.dense._b, Z, _IDENTITY, 0.0, None)      # Z += b
            return Z
        kernels.bias_activation(Z, self.dense._b, Z, self.kind, self.parameter(), None)
        if self.keeps_output:
            self.activation._A = Z          # what the activation's own forward keeps for its backward
        return Z

    def activation_backward(self, kernels, G, out):
        """``∂L/∂Z`` of Dense's output into ``out``, and Dense's ``db``."""
        saved = self.activation._A if self.keeps_output else G
        kernels.activation_gradient_bias(G, saved, out, self.dense.db, self.kind, self.parameter(), None)
        return out

    def bias_gradient(self, kernels, G, scratch):
        """Dense's ``db = Σ_rows G`` (by the kernel, whose copy of ``G`` goes to ``scratch``, or by NumPy)."""
        if G.size <= self.BIAS_GRADIENT_KERNEL_SIZE:
            kernels.activation_gradient_bias(G, G, scratch, self.dense.db, _IDENTITY, 0.0, None)
        else:
            self.dense.ops.sum(G, axis=0, out=self.dense.db)


_IDENTITY = _compiled.ACTIVATIONS["Identity"][0]


def _dense_plans(layers, overwrites):
    """Per position: the :class:`_DensePlan` of a handgrad Dense layer there, or None.

    Only classes that declare ``compiled_passes`` themselves (Dense; a
    subclass may compute something else) and handgrad's own activations,
    without methods replaced on the object (a hook that watches ``forward``
    or ``backward`` must see them called).  The
    activation's passes are fused only where they pay
    (``_compiled.FUSED_FORWARDS``, ``FUSED_BACKWARDS``), the forward only
    where the activation may write over Dense's output.
    """
    plans = [None] * len(layers)
    for i, layer in enumerate(layers):
        if not type(layer).__dict__.get("compiled_passes", False) or _hooked(layer):
            continue
        following = layers[i + 1] if i + 1 < len(layers) else None
        if following is None or _compiled.activation_kind(following) is None or _hooked(following):
            plans[i] = _DensePlan(layer, None, False, False)
            continue
        name = type(following).__name__
        plans[i] = _DensePlan(layer, following, name in _compiled.FUSED_FORWARDS and overwrites[i + 1],
                              name in _compiled.FUSED_BACKWARDS)
    return plans


def _hooked(layer):
    """True when the layer object carries its own ``forward`` or ``backward`` (or Dense's two halves)."""
    return any(name in vars(layer) for name in ("forward", "backward", "product", "backward_products"))


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
    """``Sequential(Dense, act, …, Dense)`` with the given hidden widths.

    Parameters
    ----------
    n_features : int
        The input width.
    hidden : sequence of int
        The width of each hidden layer (empty: a single Dense layer).
    n_classes : int
        The output width (the number of classes, or of outputs).
    activation : str, default "relu"
        The activation after each hidden layer, by its short name (see :func:`activations`).
    dtype : {numpy.float32, numpy.float64} or str, default numpy.float32
        The dtype of the parameters.
    seed : int, optional
        Seeds the initialisation.

    Returns
    -------
    Sequential
        The network, its Dense layers initialised for ``activation``.

    Raises
    ------
    HandgradError
        An unknown activation, or a width below 1.

    See Also
    --------
    Sequential : The network it builds, for other layer lists.

    Examples
    --------
    >>> hg.mlp(64, [32, 16], 10, activation="tanh", seed=0)
    Sequential(Dense(64, 32), Tanh(), Dense(32, 16), Tanh(), Dense(16, 10))
    """
    act = activation_class(activation)
    widths = [n_features, *hidden, n_classes]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(Dense(a, b, dtype=dtype))
        if i < len(widths) - 2:
            layers.append(act())
    return Sequential(*layers, seed=seed)
