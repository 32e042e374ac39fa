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

from handgrad.arrays import NUMPY, ops_for
from handgrad.constraints import Integer, Options
from handgrad.errors import HandgradError
from handgrad.nn.derivation import Derivation
from handgrad.registry import LAYERS, Registered
from handgrad.validation import is_sparse, resolve_dtype


class Layer(Registered, registry=LAYERS):
    """Base class.  Subclasses define ``forward`` and ``backward``.

    Defining a subclass registers it (see :class:`handgrad.registry.Registered`)
    under its class name, which model files store, and under its short
    ``name`` (the class name in snake case with hyphens, unless the class
    sets one).

    ``parameter_names`` lists the attributes holding parameters, in the order
    ``parameters()`` returns them; ``decayed_names`` is the subset that L2
    weight decay applies to.  Gradients live in attributes named ``d`` + name.
    ``buffer_names`` lists state that is saved with the model but not trained
    by gradient (a batch norm's running statistics).

    A layer keeps each constructor argument as an attribute of the same name:
    ``config()`` is then ``{"type": class name, **arguments}``, and a model
    file rebuilds the layer as ``cls(**arguments)``.  ``constraints``
    declares the valid range of each setting (``{"p": Real(0, 1, ...)}``,
    see :mod:`handgrad.constraints`): the constructor and the model-file
    reader both apply it.  A layer without the declaration is not checked.

    The protocol.  :class:`~handgrad.Sequential` asks each layer the
    questions below and holds no list of layer classes, so a user-written
    layer takes part exactly as a built-in one does.

    * Widths.  ``input_width()`` is the number of input columns the layer
      requires (None: any); ``output_width(width)`` the number it outputs
      for ``width`` input columns (by default the same); and
      ``width_problem(width)`` says why it cannot take ``width`` columns
      (a phrase ending the model's error message), or None.  The model's
      ``n_features`` is the first layer's required width, its
      ``n_outputs`` the last output width.
    * Initialisation.  ``initialize(rng, scheme)`` is called once, by the
      Sequential the layer joins, with a generator of the layer's own
      (spawned from the model's seed) and the scheme ("he" or "glorot") that
      the layers after it ask for.  By default it does nothing: a layer
      whose parameters start at fixed values (BatchNorm) sets them in its
      constructor.
    * ``initializer`` is what a layer asks of the layer with drawn
      parameters before it: "he" or "glorot", or None for a layer that
      leaves the choice to the next one.  The first layer after a drawn
      one that declares an initializer decides; the search stops at the
      next layer that overrides ``initialize``.
    * ``dtype``: the dtype of a layer built with ``dtype=`` (Dense,
      BatchNorm).  The layers of a model must agree; a layer that declares
      none (None) has its parameters moved into the model's dtype.
    * ``in_place = True`` declares that ``backward`` never reads the layer's
      input (only its output, or state the forward pass kept), so
      Sequential may let ``forward`` write over its input when the layer
      before it allows that (next item).
    * ``backward_reads_output = False`` declares that ``backward`` never
      reads the array ``forward`` returned (that is always the ``out`` it
      was handed), so an ``in_place`` layer after it may write over it.
      Dense declares it: its backward reads its input and ``W``.
    * ``input_grad_optional = True`` declares that ``backward`` takes
      ``input_grad=False`` and then skips ``∂L/∂(input)`` (returning None):
      Sequential asks so of its first layer, whose input is the data.
    * ``bind_parameter(name, array, gradient)`` makes a parameter and its
      gradient the given arrays: Sequential keeps every parameter in one
      flat buffer and hands each layer views into it.
    * Arrays.  ``ops`` is the :mod:`handgrad.arrays` ops the layer computes
      with: NumPy's (:data:`~handgrad.arrays.NUMPY`, whose functions are
      NumPy's own) until the layer is moved.  ``place(ops)`` makes the
      layer compute with ``ops`` and moves its buffers there; Sequential
      calls it from :meth:`~handgrad.Sequential.to` after binding the
      parameters on the new device, and :meth:`to` does both for a layer on
      its own.  A layer that writes ``ops.multiply(G, A, out=out)`` where
      NumPy code writes ``np.multiply(G, A, out=out)`` trains on any array
      API namespace (PyTorch, CuPy, array-api-strict); one written with
      ``np`` trains on NumPy only.

    Writing a layer.  A low-rank map ``Z = X U V + b`` from ``n_in`` to
    ``n_out`` features declares its parameters (``parameter_names``), its
    widths (``input_width``, ``output_width``), draws its initial values in
    ``initialize`` and writes its backward by hand: ``∂L/∂V = (XU)ᵀ G``,
    ``∂L/∂U = Xᵀ G Vᵀ``, ``∂L/∂b = Σ_rows G``, ``∂L/∂X = G Vᵀ Uᵀ``.  Its
    whole class is the gallery example ``docs/examples/plot_custom_layer.py``
    (derived in docs/derivations.md, "Your own layer: a low-rank map").
    ``hg.Sequential(LowRank(64, 32, 4), hg.BatchNorm(32), hg.ReLU(),
    hg.Dense(32, 10))`` then checks its widths, draws ``U`` and ``V`` for
    He, trains (on a GPU too: it computes through ``self.ops`` and the
    operators), passes ``hg.gradcheck`` and is saved and loaded like any
    model (the file stores ``{"type": "LowRank", "n_in": 64, …}``).  A
    layer may also state ``parameter_shapes`` (below), so that a model
    file's reader checks its arrays before building it.

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

    See Also
    --------
    Sequential : Runs layers in order and asks each the questions above.
    Activation : The base of the elementwise layers without parameters.
    gradcheck : Checks a layer's backward pass against central differences.

    Examples
    --------
    A built-in layer answers the protocol's questions:

    >>> layer = hg.Dense(4, 3, seed=0)
    >>> isinstance(layer, hg.Layer), layer.input_width(), layer.output_width(4)
    (True, 4, 3)
    >>> layer.parameter_names, [tuple(p.shape) for p in layer.parameters()]
    (('W', 'b'), [(4, 3), (3,)])
    >>> hg.Dropout(0.5).eval().training
    False
    """

    parameter_names = ()
    decayed_names = ()
    buffer_names = ()
    name = None
    initializer = None
    dtype = None
    in_place = False
    backward_reads_output = True
    input_grad_optional = False
    # True on a class whose forward and backward the compiled kernels reproduce with its bias pass fused
    # into the next layer's (Dense): Sequential.prepare reads it off the class itself, not its subclasses,
    # which may compute something else.
    compiled_passes = False
    derivation = None
    training = True
    ops = NUMPY

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

    def input_width(self):
        """The number of input columns this layer requires, or None when it takes any width."""
        return None

    def output_width(self, width):
        """The number of columns this layer outputs for an input of ``width`` columns: by default ``width``."""
        return width

    def width_problem(self, width):
        """Why this layer cannot take an input of ``width`` columns (a phrase), or None when it can."""
        required = self.input_width()
        return None if required is None or width == required else f"takes {required}"

    def initialize(self, rng, scheme):
        """Draw the initial parameters, once, from the generator ``rng`` for ``scheme`` ("he" or "glorot").

        Called by the :class:`~handgrad.Sequential` the layer joins; by
        default nothing is drawn.
        """

    def bind_parameter(self, name, array, gradient):
        """Make parameter ``name`` the array ``array`` and its gradient ``gradient`` (views of a model's buffers)."""
        setattr(self, name, array)
        setattr(self, "d" + name, gradient)

    def place(self, ops):
        """Compute with ``ops`` (:func:`handgrad.arrays.ops_for`) from now on, and move the buffers there.

        The parameters are the caller's to move: :meth:`to` binds copies of
        them on the new device, a Sequential views of its moved buffer.  A
        layer that keeps other device arrays between calls (scratch buffers)
        drops them here.
        """
        self.ops = ops
        for name in self.buffer_names:
            setattr(self, name, ops.asarray(getattr(self, name), copy=True))

    def to(self, target, device=None):
        """Move the layer's parameters, gradients and buffers to ``target``'s namespace (and ``device``);
        return the layer.

        ``target`` is an array, a namespace (``torch``, ``array_api_strict``,
        ``numpy``) or ops, as :func:`handgrad.arrays.ops_for` takes it.  A
        layer in a :class:`~handgrad.Sequential` moves with the model
        (:meth:`Sequential.to <handgrad.Sequential.to>`), which keeps its
        parameters as views of one buffer; this is for a layer on its own.
        """
        ops = ops_for(target, device)
        if ops is self.ops:
            return self
        for name in self.parameter_names:
            self.bind_parameter(name, ops.asarray(getattr(self, name), copy=True),
                                ops.asarray(getattr(self, "d" + name), copy=True))
        self.place(ops)
        return self

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
        the file holds.  ``config`` has been checked against the class's
        ``constraints`` already.  A layer without parameters holds none.
        """
        return {} if not (cls.parameter_names or cls.buffer_names) else None

    def __call__(self, X):
        return self.forward(X)

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
    ``initializer`` the following activation declares.  Biases start at zero.

    ``W`` is drawn once.  An explicit scheme is drawn at construction, from
    ``default_rng(seed)``, and kept.  ``"auto"`` waits for the scheme: the
    Sequential the layer joins draws it (:meth:`initialize`), from
    ``default_rng(seed)`` if the layer has a seed, else from the model's
    generator for its position; a Dense used on its own draws Glorot from
    ``default_rng(seed)`` the first time ``W``, ``b`` or ``forward`` is used.

    Widths: it requires ``n_in`` input columns and outputs ``n_out``.  It
    never reads its output in backward (``backward_reads_output = False``),
    so an in-place activation after it writes over it, and it skips its
    input gradient when asked (``input_grad_optional``).

    Parameters
    ----------
    n_in : int
        The number of input features, at least 1.
    n_out : int
        The number of units (output columns), at least 1.
    init : {"auto", "glorot", "he"}, default "auto"
        How ``W`` is drawn (above).
    seed : int, optional
        Seeds this layer's own draw of ``W``; None draws from the model's
        generator (``"auto"``) or from fresh entropy.
    dtype : {numpy.float32, numpy.float64} or str, default numpy.float32
        The dtype of ``W``, ``b`` and their gradients.

    Raises
    ------
    HandgradError
        A width below 1 or an unknown ``init`` (the declared ``constraints``).
    DataError
        A ``dtype`` other than float32 or float64.

    See Also
    --------
    mlp : Builds Dense layers with activations between them.
    Sequential : Joins layers into a network.

    Examples
    --------
    >>> layer = hg.Dense(3, 2, init="glorot", seed=0, dtype=np.float64)
    >>> X = np.ones((4, 3))
    >>> Z = layer.forward(X)
    >>> Z.shape, np.allclose(Z, X @ layer.W + layer.b)
    ((4, 2), True)
    >>> G = np.ones((4, 2))                       # ∂L/∂Z
    >>> dX = layer.backward(G)
    >>> np.allclose(layer.dW, X.T @ G), np.allclose(dX, G @ layer.W.T)
    (True, True)
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
    backward_reads_output = False
    input_grad_optional = True
    compiled_passes = True
    # Widths have no cap: a model file that claims a huge layer is refused by the reader, which
    # reads each array to the shape these imply only if the file holds its bytes.
    constraints = {
        "n_in": Integer(1, remedy="give the number of input features (the width of the layer before)"),
        "n_out": Integer(1, remedy="give the number of units"),
        "init": Options(*INITIALIZERS),
    }

    def __init__(self, n_in, n_out, *, init="auto", seed=None, dtype=np.float32):
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.init, self.seed = init, seed
        dtype = resolve_dtype(dtype)
        self._W = np.empty((self.n_in, self.n_out), dtype=dtype)
        self._b = np.zeros(self.n_out, dtype=dtype)
        self.dW = np.zeros_like(self._W)
        self.db = np.zeros_like(self._b)
        self._pending = init == "auto"          # W not drawn yet: the scheme is still to be chosen
        if not self._pending:
            self._draw(init, np.random.default_rng(seed))

    # W and b are properties so that assigning to them copies into the existing
    # arrays: a Sequential keeps all parameters in one flat buffer, and a plain
    # attribute assignment would silently detach the layer from it.  Reading
    # or writing either first draws a pending W, as construction used to.
    @property
    def W(self):
        if self._pending:
            self._draw_alone()
        return self._W

    @W.setter
    def W(self, value):
        if self._pending:
            self._draw_alone()
        self._assign(self._W, value, "W")

    @property
    def b(self):
        if self._pending:
            self._draw_alone()
        return self._b

    @b.setter
    def b(self, value):
        if self._pending:
            self._draw_alone()
        self._assign(self._b, value, "b")

    def _assign(self, target, value, name):
        value = self.ops.asarray(value)
        if tuple(value.shape) != tuple(target.shape):
            raise HandgradError(f"{name} must have shape {tuple(target.shape)}, got {tuple(value.shape)}")
        self.ops.copyto(target, value)

    @property
    def dtype(self):
        return self.ops.numpy_dtype(self._W.dtype)

    def input_width(self):
        return self.n_in

    def output_width(self, width):
        return self.n_out

    def initialize(self, rng, scheme):
        """With ``init="auto"``, draw ``W`` for ``scheme`` from ``default_rng(seed)``, or from ``rng`` without a
        seed, and zero ``b``; an explicit ``init`` was drawn at construction and is kept.

        An ``"auto"`` layer is drawn here even when it was drawn before (used
        on its own, or given a ``W``): a model built from it starts as the
        model's seed says.
        """
        if self.init == "auto":
            self._draw(scheme, rng if self.seed is None else np.random.default_rng(self.seed))

    def _draw_alone(self):
        """The draw of a Dense used outside a model: Glorot, from its own seed."""
        self._draw("glorot", np.random.default_rng(self.seed))

    def _draw(self, scheme, rng):
        """Draw ``W`` by ``scheme`` ("glorot" or "he") from ``rng``; zero ``b``."""
        if scheme == "he":
            values = rng.standard_normal(self._W.shape) * np.sqrt(2.0 / self.n_in)
        else:
            limit = np.sqrt(6.0 / (self.n_in + self.n_out))
            values = rng.uniform(-limit, limit, self._W.shape)
        self.ops.copyto(self._W, values)
        self.ops.copyto(self._b, 0)
        self._pending = False

    def bind_parameter(self, name, array, gradient):
        # Rebind the storage behind the property: its setter would copy into the old array instead.
        setattr(self, "_" + name, array)
        setattr(self, "d" + name, gradient)

    def forward(self, X, out=None):
        """Compute ``Z = X W + b`` and keep ``X`` for the backward pass.

        ``X`` may be a SciPy sparse matrix or array (CSR rows of the data, in
        the first layer): the product is then formed from its stored
        entries, never from a dense copy.

        Parameters
        ----------
        X : array of shape (n, n_in), or a SciPy sparse matrix or array
            The layer's input, one sample per row.
        out : array of shape (n, n_out), optional
            Where to write ``Z``; a new array when None.

        Returns
        -------
        array of shape (n, n_out)
            ``Z`` (``out`` when given).
        """
        out = self.product(X, out)
        out += self._b
        return out

    def product(self, X, out=None):
        """``X W``: :meth:`forward` without its bias, which :class:`~handgrad.Sequential` adds in the
        compiled kernel that also applies the activation after this layer."""
        if self._pending:
            self._draw_alone()
        ops = self.ops
        if out is None:
            out = ops.empty((X.shape[0], self.n_out), dtype=self._W.dtype)
        if is_sparse(X):
            out[...] = X @ self._W
        else:
            ops.matmul(X, self._W, out=out)
        self._X = X
        return out

    def backward(self, G, out=None, input_grad=True):
        """Store ``dW = Xᵀ G`` and ``db = Σ_rows G``; return ``G Wᵀ``.

        ``input_grad=False`` skips ``G Wᵀ`` (and returns None): the first
        layer's input is the data, whose gradient nobody needs.  For a
        sparse ``X``, ``Xᵀ G`` is a sparse-times-dense product.

        Parameters
        ----------
        G : array of shape (n, n_out)
            ``∂L/∂Z``, the gradient of the loss with respect to this layer's output.
        out : array of shape (n, n_in), optional
            Where to write ``∂L/∂X``; a new array when None.
        input_grad : bool, default True
            Whether to compute ``∂L/∂X`` at all.

        Returns
        -------
        array of shape (n, n_in) or None
            ``∂L/∂X = G Wᵀ``, or None with ``input_grad=False``.
        """
        self.ops.sum(G, axis=0, out=self.db)
        return self.backward_products(G, out, input_grad)

    def backward_products(self, G, out=None, input_grad=True):
        """:meth:`backward` without ``db``: store ``dW = Xᵀ G``, return ``G Wᵀ`` (None without ``input_grad``).

        :class:`~handgrad.Sequential` calls it after a compiled kernel has
        summed ``db`` in the same pass as the activation's backward.
        """
        ops = self.ops
        if is_sparse(self._X):
            self.dW[...] = self._X.T @ G
        else:
            ops.matmul(self._X.T, G, out=self.dW)
        if not input_grad:
            return None
        if out is None:
            out = ops.empty((G.shape[0], self.n_in), dtype=G.dtype)
        ops.matmul(G, self._W.T, out=out)
        return out

    @classmethod
    def parameter_shapes(cls, config):
        return {"W": (config["n_in"], config["n_out"]), "b": (config["n_out"],)}

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out})"

    def export(self, graph, x):
        """``X W + b`` as one ONNX Gemm."""
        return graph.op("Gemm", x, graph.constant(self._W, name="W"), graph.constant(self._b, name="b"))


def layer_from_config(config, dtype=np.float32):
    """Rebuild a layer from ``Layer.config()`` output (weights are set separately)."""
    return LAYERS.build(config, dtype=dtype)
