"""Layers: each a forward pass and, right beside it, the backward pass it implies.

Notation.  The seeds write one sample as a column vector, ``z = W x + b`` with
``W`` of shape (out, in).  handgrad keeps a minibatch of ``n`` samples as the
rows of a matrix, so the same layer reads ``Z = X W + b`` with ``W`` of shape
(in, out): the code's ``W`` is the seeds' ``Wᵀ``.  Every backward pass below
receives ``G = ∂L/∂(output)`` (shape of the output) and returns
``∂L/∂(input)``; parameter gradients are stored on the layer (``dW``, ``db``).

Buffers.  ``forward`` and ``backward`` accept ``out=``: the training loop
hands each layer preallocated arrays so that a step allocates nothing large.
A layer writes only into arrays it allocated or was handed as ``out``; it never
modifies the arrays it receives as input.
"""

import numpy as np

from handgrad.errors import HandgradError
from handgrad.nn.derivation import Derivation
from handgrad.registry import LAYERS, constructor_arguments, snake_case
from handgrad.validation import is_sparse, resolve_dtype


class Layer:
    """Base class.  Subclasses define ``forward`` and ``backward``.

    Defining a subclass registers it (see :mod:`handgrad.registry`) under its
    class name, which model files store, and under its short ``name`` (the
    class name in lower case with hyphens, unless the class sets one).

    ``parameter_names`` lists the attributes holding parameters, in the order
    ``parameters()`` returns them; ``decayed_names`` is the subset that L2
    weight decay applies to.  Gradients live in attributes named ``d`` + name.
    ``buffer_names`` lists state that is saved with the model but not trained
    by gradient (a batch norm's running statistics).

    A layer keeps each constructor argument as an attribute of the same name:
    ``config()`` is then ``{"type": class name, **arguments}``, and a model
    file rebuilds the layer as ``cls(**arguments)``.

    ``initializer`` is what a layer asks of the Dense layer before it: "he"
    or "glorot", or None for a layer that leaves the choice to the next one
    (see :meth:`Dense.initialize`).

    ``in_place = True`` declares that ``backward`` never reads the layer's
    input (only its output, or state the forward pass kept), so
    :class:`~handgrad.Sequential` may let ``forward`` write over its input.

    Modes.  ``training`` is True in training mode (the default, as in
    PyTorch) and False in inference mode; ``train()`` and ``eval()`` switch
    it.  Only layers whose two modes differ read it (Dropout, BatchNorm).

    ``derivation`` declares the layer's maths once, for ``hg.derive`` and
    ``handgrad derive`` to print for a concrete network (see
    :mod:`handgrad.derivations.notation` for the formula syntax)::

        derivation = hg.Derivation(
            forward="A = max(αZ, Z)",
            backward={"input": "∂J/∂Z = G ⊙ (I(Z > 0) + α I(Z ≤ 0))"},
            seeds=(), section="activations", note="α = $alpha")

    ``backward`` holds ``"input"`` (``∂J/∂(input)`` from ``G = ∂J/∂(output)``)
    and one equation per name in ``parameter_names``; ``shapes`` optionally
    spells out the operands (``{"forward": "n×$in · $in×$out + $out"}``);
    ``seeds`` names the seed documents it comes from.  A layer without a
    declaration (None) is printed with a note instead.
    """

    parameter_names = ()
    decayed_names = ()
    buffer_names = ()
    name = None
    initializer = None
    in_place = False
    derivation = None
    training = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = snake_case(cls.__name__).replace("_", "-")
        LAYERS.add(cls)

    def train(self, mode=True):
        """Training mode (``mode=False``: inference mode); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode; returns the layer."""
        return self.train(False)

    def reseed(self, seed):
        """Give a layer that draws random numbers a generator seeded by ``seed``; others ignore it.

        ``seed`` is anything ``np.random.default_rng`` takes.  ``fit`` reseeds
        every layer at the start of each epoch from ``(seed, epoch)``, so a run
        resumed at an epoch draws exactly what the uninterrupted run drew.
        """

    def stored_state_problem(self, name):
        """What is wrong with buffer ``name`` as read from a file (a phrase), or None: a layer's own rule."""
        return None

    def parameters(self):
        return [getattr(self, name) for name in self.parameter_names]

    def gradients(self):
        return [getattr(self, "d" + name) for name in self.parameter_names]

    @classmethod
    def parameter_shapes(cls, config):
        """``{name: shape}`` of the parameters and buffers a layer built from ``config`` holds, or None if unknown.

        A model-file reader checks these against the file's size before it
        builds anything, so a hostile file cannot make it allocate more than
        the file holds.  A layer without parameters holds none.
        """
        return {} if not (cls.parameter_names or cls.buffer_names) else None

    def config(self):
        """``{"type": class name, **constructor arguments}``, from which ``layer_from_config`` rebuilds it."""
        return {"type": type(self).__name__, **constructor_arguments(self)}

    def __call__(self, X):
        return self.forward(X)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in constructor_arguments(self).items())
        return f"{type(self).__name__}({arguments})"

    def export(self, graph, x):
        """Write the layer's inference-mode forward pass into an ONNX graph; return its output's name.

        ``graph`` is a :class:`handgrad.io.onnx.GraphWriter`: ``graph.op(type,
        *inputs, **attributes)`` adds a node of the standard ONNX domain,
        ``graph.constant(array)`` stores a parameter, and both return the
        name the value is read by.  ``x`` names the input, of the network's
        dtype.  A layer that does not define it cannot be exported.
        """
        name = type(self).__name__
        raise HandgradError(f"{name} has no ONNX exporter; define {name}.export(self, graph, x), which writes its "
                            "inference-mode forward pass with graph.op and returns the output (see docs/onnx.md)")


INITIALIZERS = ("auto", "glorot", "he")


class Dense(Layer):
    """Affine layer ``Z = X W + b``; ``W`` has shape (n_in, n_out), ``b`` (n_out,).

    Seed notation: ``z = W_s x + b`` for one column ``x``, with ``W_s = Wᵀ``.

    Backward, for ``G = ∂L/∂Z`` of shape (n, n_out):

    * ``∂L/∂W = Xᵀ G``  (seeds: ``δ xᵀ`` summed over samples, transposed),
    * ``∂L/∂b = Σ_rows G``  (each sample's ``δ`` summed),
    * ``∂L/∂X = G Wᵀ``  (seeds: ``W_sᵀ δ``).

    Initialisation: ``"glorot"`` draws ``U(−a, a)`` with ``a = √(6/(n_in+n_out))``,
    suited to tanh and sigmoid; ``"he"`` draws ``N(0, 2/n_in)``, suited to
    ReLU; ``"auto"`` (default) lets :class:`~handgrad.Sequential` pick by the
    ``initializer`` the following activation declares (Glorot until then).
    Biases start at zero.
    """

    derivation = Derivation(
        forward="Z = X W + b",
        backward={"W": "∂J/∂W = Xᵀ G", "b": "∂J/∂b = Σ_{rows} G", "input": "∂J/∂X = G Wᵀ"},
        shapes={"forward": "n×$in · $in×$out + $out", "W": "$in×n · n×$out", "b": "Σ_{rows} n×$out",
                "input": "n×$out · $out×$in"},
        seeds=("000", "001", "002", "003", "004"), section="dense",
        note="the seeds write z = W_s x + b for one sample x as a column, with W_s = Wᵀ")

    parameter_names = ("W", "b")
    decayed_names = ("W",)
    name = "dense"

    def __init__(self, n_in, n_out, *, init="auto", seed=None, dtype=np.float32):
        for name, value in (("n_in", n_in), ("n_out", n_out)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise HandgradError(f"Dense {name} must be a positive integer, got {value!r}")
        if init not in INITIALIZERS:
            raise HandgradError(f"unknown init {init!r}; choose one of {', '.join(INITIALIZERS)}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.init, self.seed = init, seed
        dtype = resolve_dtype(dtype)
        self._W = np.empty((self.n_in, self.n_out), dtype=dtype)
        self._b = np.zeros(self.n_out, dtype=dtype)
        self.dW = np.zeros_like(self._W)
        self.db = np.zeros_like(self._b)
        self.initialize("glorot" if init == "auto" else init, np.random.default_rng(seed))

    # W and b are properties so that assigning to them copies into the existing
    # arrays: a Sequential keeps all parameters in one flat buffer, and a plain
    # attribute assignment would silently detach the layer from it.
    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        self._assign(self._W, value, "W")

    @property
    def b(self):
        return self._b

    @b.setter
    def b(self, value):
        self._assign(self._b, value, "b")

    @staticmethod
    def _assign(target, value, name):
        value = np.asarray(value)
        if value.shape != target.shape:
            raise HandgradError(f"{name} must have shape {target.shape}, got {value.shape}")
        target[...] = value

    @property
    def dtype(self):
        return self._W.dtype.type

    def initialize(self, scheme, rng):
        """Redraw ``W`` by ``scheme`` ("glorot" or "he") from ``rng``; zero ``b``."""
        if scheme == "he":
            values = rng.standard_normal(self._W.shape) * np.sqrt(2.0 / self.n_in)
        else:
            limit = np.sqrt(6.0 / (self.n_in + self.n_out))
            values = rng.uniform(-limit, limit, self._W.shape)
        self._W[...] = values
        self._b[...] = 0

    def forward(self, X, out=None):
        """``X W + b``.  ``X`` may be a SciPy sparse matrix or array (CSR rows of the data, in the
        first layer): the product is then formed from its stored entries, never from a dense copy."""
        if out is None:
            out = np.empty((X.shape[0], self.n_out), dtype=self._W.dtype)
        if is_sparse(X):
            out[...] = X @ self._W
        else:
            np.matmul(X, self._W, out=out)
        out += self._b
        self._X = X
        return out

    def backward(self, G, out=None, input_grad=True):
        """Store ``dW = Xᵀ G`` and ``db = Σ_rows G``; return ``G Wᵀ``.

        ``input_grad=False`` skips ``G Wᵀ`` (and returns None): the first
        layer's input is the data, whose gradient nobody needs.  For a
        sparse ``X``, ``Xᵀ G`` is a sparse-times-dense product.
        """
        if is_sparse(self._X):
            self.dW[...] = self._X.T @ G
        else:
            np.matmul(self._X.T, G, out=self.dW)
        np.sum(G, axis=0, out=self.db)
        if not input_grad:
            return None
        if out is None:
            out = np.empty((G.shape[0], self.n_in), dtype=G.dtype)
        np.matmul(G, self._W.T, out=out)
        return out

    @classmethod
    def parameter_shapes(cls, config):
        n_in, n_out = config.get("n_in"), config.get("n_out")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (n_in, n_out)):
            raise HandgradError(f"a Dense layer's n_in and n_out must be positive integers, got {n_in!r}, {n_out!r}")
        return {"W": (n_in, n_out), "b": (n_out,)}

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out})"

    def export(self, graph, x):
        """``X W + b`` as one ONNX Gemm."""
        return graph.op("Gemm", x, graph.constant(self._W, name="W"), graph.constant(self._b, name="b"))


def layer_from_config(config, dtype=np.float32):
    """Rebuild a layer from ``Layer.config()`` output (weights are set separately)."""
    return LAYERS.build(config, dtype=dtype)
