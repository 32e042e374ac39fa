"""Datasets as handgrad trains on them: raw features, integer labels, a fixed test set.

``load_dataset`` accepts the name of a built-in dataset or the path of the
user's own file:

==================  ==========================================  ===============
spec                source                                      test set
==================  ==========================================  ===============
``"digits"``        scikit-learn's embedded 8x8 digits (0..16)  stratified split
``"mnist"``         original IDX files (see :mod:`.datasets`)   the official 10k
``"fashion-mnist"`` original IDX files                          the official 10k
``*.csv``           header + rows (see :mod:`.tabular`)         stratified split
``*.npz``           arrays ``X`` and ``y``                      stratified split
==================  ==========================================  ===============

Features come back unscaled (pixels 0..255, digits 0..16); scaling is the job
of :class:`handgrad.data.preprocessing.Preprocessor`, fitted on the training part.

The ``task`` of the loss (:mod:`handgrad.tasks`) decides what the targets
are.  Classification: one label column, encoded as class indices.  The
others (regression: columns of real numbers; multilabel: columns of 0/1
labels) read one or more target columns of a CSV or NPZ table, and their
test set is a seeded random share of the rows (there are no classes to
stratify by).
"""

import difflib
import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handgrad import tasks
from handgrad.data import datasets
from handgrad.data.idx import read_idx
from handgrad.data.tabular import read_csv, read_csv_features, read_csv_targets, read_npz
from handgrad.errors import DataError, HandgradError

MAX_LABEL_CHARS = 256
BUILT_IN = ("digits", *datasets.DATASETS)
FILE_SUFFIXES = (".csv", ".npz")


@dataclass
class Dataset:
    """A labelled dataset split into training and test parts.

    Attributes
    ----------
    name : str
        ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, or the file's stem.
    X_train, X_test : ndarray of shape (n_train, d), (n_test, d)
        Raw feature values: float64, or for MNIST-style images the stored
        uint8 pixels (47 MB for MNIST's 60,000 training images, where float64
        would take 376 MB); the preprocessor converts them to the model's dtype.
    y_train, y_test : ndarray of shape (n_train,), (n_test,), intp
        Class indices ``0..K-1``: ``classes[y]`` is the original label.
        For regression and multilabel data, float64 arrays of shape
        (n_train, K) and (n_test, K): one column per target (0/1 for labels).
    classes : ndarray of shape (K,)
        Original labels, sorted (ints, or strings for text labels); for
        regression and multilabel data, the names of the K target columns
        (``"y"``, or ``"y0", "y1", …`` for an NPZ's columns).
    image_shape : tuple of int or None
        ``(rows, cols)`` of each sample for image data.
    feature_names : list of str or None
        Column names of a CSV file.
    kind : {"image", "tabular"}
    class_names : tuple of str or None
        What each class is called where its label is only a code (Fashion-MNIST's
        0..9 are "T-shirt/top" .. "Ankle boot"); None where the labels are the names.
    task : Task
        What the targets are (see the module docstring).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    image_shape: tuple | None
    feature_names: list | None
    kind: str
    class_names: tuple | None = None
    task: tasks.Task = tasks.CLASSIFICATION

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def n_classes(self):
        """The number of classes, or of target columns: the model's outputs."""
        return len(self.classes)

    n_outputs = n_classes


def load_dataset(spec, *, data_dir=None, target=None, download=True, test_fraction=0.2, seed=0,
                 parts=("train", "test"), task=tasks.CLASSIFICATION, drop=None):
    """Load a built-in dataset or a ``.csv``/``.npz`` file.

    Parameters
    ----------
    spec : str or Path
        ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, or a path ending in
        ``.csv`` or ``.npz``.
    data_dir : str or Path, optional
        First folder searched for MNIST-style files (see :mod:`handgrad.data.datasets`).
    target : str or list of str, optional
        CSV only: the label column (default: the last column); for
        regression and multilabel data one or more target columns, as a list
        or as comma-separated text (``"a,b,c"``).
    download : bool
        Whether missing MNIST-style files may be downloaded.
    test_fraction : float in [0, 1)
        Share of each class held out as the test set (digits, CSV, NPZ).
    seed : int
        Seed of that split.
    parts : subset of ``("train", "test")``
        MNIST-style data only: the splits to read (and fetch if missing); an
        unread split comes back empty.  Other sources hold both splits in one
        file, so they are always read whole.
    task : Task or its name
        What the targets are: class labels, real numbers, or 0/1 labels.
    drop : str or list of str, optional
        CSV only: columns to leave out of the features (an id, say), as a
        list or as comma-separated text.

    Returns
    -------
    Dataset
    """
    if not 0 <= test_fraction < 1:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}; e.g. 0.2 holds out a fifth")
    try:
        task = tasks.get(task)
    except HandgradError as exc:
        raise DataError(str(exc)) from None
    spec = os.fspath(spec)
    suffix = Path(spec).suffix.lower()
    targets = target_columns(target)
    if target is not None and suffix != ".csv":
        raise DataError(f"target={target!r} names a CSV column, but {spec!r} is not a .csv file; drop --target")
    dropped = target_columns(drop, subject="--drop ")
    if drop is not None and suffix != ".csv":
        raise DataError(f"--drop names CSV columns, but {spec!r} is not a .csv file; leave out --drop")
    if not task.label_column:
        return _load_targets_table(spec, suffix, targets, task, test_fraction, seed, dropped)
    if targets is not None and len(targets) > 1:
        raise DataError(f"--target names {len(targets)} columns, but a classification loss reads one label "
                        "column; use --loss sigmoid-bce for several 0/1 labels, or name one column")
    if spec.lower() == "digits":
        return _load_digits(test_fraction, seed)
    if spec.lower() in datasets.DATASETS:
        return _load_idx_dataset(spec.lower(), data_dir, download, parts)
    if suffix == ".csv":
        X, labels, feature_names = read_csv(spec, target=targets and targets[0], drop=dropped)
        return _split_table(Path(spec).stem, X, labels, feature_names, test_fraction, seed, spec)
    if suffix == ".npz":
        arrays = read_npz(spec)
        X = _check_table_features(arrays["X"], spec)
        return _split_table(Path(spec).stem, X, arrays["y"], None, test_fraction, seed, spec)
    check_dataset_name(spec)


def target_columns(target, subject="--target "):
    """The target column names in ``target``: None, a list of names, or comma-separated text (``"a,b,c"``).

    Names are stripped of surrounding spaces; an empty name or a name given
    twice is refused with a one-line :class:`~handgrad.errors.DataError`
    whose message starts with ``subject``.
    """
    if target is None:
        return None
    names = [str(name).strip() for name in (target if isinstance(target, (list, tuple)) else str(target).split(","))]
    if not names or "" in names:
        shown = target if isinstance(target, str) else ",".join(map(str, target))
        raise DataError(f"{subject}names an empty column in {shown!r}; give column names separated by commas, "
                        "such as a,b,c")
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise DataError(f"{subject}names the column {repeated[0]!r} more than once; name each column once")
    return names


def check_dataset_name(spec):
    """Refuse a ``spec`` that is neither a built-in name nor a ``.csv``/``.npz`` path.

    The message quotes ``spec`` as given and suggests the nearest built-in
    name, since a typo such as ``mnst`` is far more likely than a file
    without a suffix.
    """
    spec = os.fspath(spec)
    if spec.lower() in BUILT_IN or Path(spec).suffix.lower() in FILE_SUFFIXES:
        return
    nearest = difflib.get_close_matches(spec.lower(), BUILT_IN, n=1, cutoff=0.6)
    hint = f" (did you mean {nearest[0]}?)" if nearest else ""
    raise DataError(f"unknown dataset {spec!r}{hint}; use {', '.join(BUILT_IN)}, or a path ending in .csv or .npz")


def load_features(path, *, feature_names=None):
    """Read unlabelled samples for prediction.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (header; every column a feature unless ``feature_names``
        picks some), ``.npz`` (array ``X``), or an IDX image file (gzip'd or raw).
    feature_names : list of str, optional
        CSV only: the columns to use, in this order.

    Returns
    -------
    ndarray of shape (n, d), float64
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_csv_features(path, feature_names=feature_names)
    if suffix == ".npz":
        return _check_table_features(read_npz(path, keys=("X",))["X"], path)
    images = read_idx(path)
    if images.ndim < 2:
        raise DataError(f"{path} holds a 1-D IDX array (labels?), not images; pass an images file such as t10k-images-idx3-ubyte.gz")
    if images.size == 0:
        raise DataError(f"{path} holds no images (shape {images.shape}); pass a file with at least one")
    return _finite_features(images.reshape(images.shape[0], -1), path)


# -- built-in datasets -------------------------------------------------------

def _load_digits(test_fraction, seed):
    X, target = digits_arrays()
    y, classes = encode_labels(target, "digits")
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset("digits", X[train], y[train], X[test], y[test], classes,
                   image_shape=(8, 8), feature_names=None, kind="image")


def digits_arrays():
    """scikit-learn's digits as ``(X, y)``: float64 pixels 0..16 (1797 x 64) and int labels.

    The values of ``sklearn.datasets.load_digits()``, read straight from the
    CSV file scikit-learn ships, as ``load_digits`` reads it: importing
    ``sklearn.datasets`` takes seconds (SciPy and more), reading the file
    milliseconds, and ``handgrad train`` on digits needs nothing else from
    scikit-learn.  Falls back to ``load_digits`` if the file is not there.
    """
    spec = importlib.util.find_spec("sklearn")      # locates the package without importing it
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, mode="rt", encoding="utf-8") as file:
                data = np.loadtxt(file, delimiter=",")
            return data[:, :-1], data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y


def _load_idx_dataset(name, data_dir, download, parts):
    parts = [part for part in ("train", "test") if part in parts]
    if not parts:
        raise DataError("parts names no split; pass ('train',), ('test',) or both")
    roles = [f"{part}_{what}" for part in parts for what in ("images", "labels")]
    paths = datasets.locate(name, data_dir=data_dir, download=download, roles=roles)
    splits = {part: _idx_split(paths, part) for part in parts}
    shapes = {shape for _, _, shape in splits.values()}
    if len(shapes) > 1:
        raise DataError(f"{paths['test_images']} holds {splits['test'][2]} images but the training images are "
                        f"{splits['train'][2]}; use the files of one dataset")
    shape = shapes.pop()
    empty = (np.empty((0, shape[0] * shape[1]), dtype=np.uint8), np.empty(0, dtype=np.intp), shape)   # a split not asked for
    X_train, y_train, _ = splits.get("train", empty)
    X_test, y_test, _ = splits.get("test", empty)
    names = datasets.DATASETS[name].class_names
    return Dataset(name, X_train, y_train, X_test, y_test, np.arange(10), image_shape=shape,
                   feature_names=None, kind="image",
                   class_names=None if list(names) == [str(c) for c in range(10)] else tuple(names))


def _idx_split(paths, part):
    """``(X, y, image_shape)`` of one split from its images and labels files."""
    X, shape = _idx_images(paths[f"{part}_images"])
    y = _idx_labels(paths[f"{part}_labels"], len(X), paths[f"{part}_images"])
    return X, y, shape


def _idx_images(path):
    images = read_idx(path)
    if images.ndim != 3 or images.size == 0:
        raise DataError(f"{path} holds an array of shape {images.shape}, not a stack of images (n, rows, cols); check the file name")
    if images.dtype != np.uint8:
        raise DataError(f"{path} holds {images.dtype} pixels, but MNIST-style images are unsigned bytes; the file is damaged, download it again")
    return images.reshape(len(images), -1), images.shape[1:]


def _idx_labels(path, n_images, images_path):
    labels = read_idx(path)
    if labels.ndim != 1:
        raise DataError(f"{path} holds an array of shape {labels.shape}, not labels (n,); check the file name")
    if len(labels) != n_images:
        raise DataError(f"{path} has {len(labels)} labels but {images_path} has {n_images} images; use matching files")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path} holds labels outside the digits 0..9; the file is damaged, download it again")
    return labels.astype(np.intp)


# -- tables ------------------------------------------------------------------

def _load_targets_table(spec, suffix, targets, task, test_fraction, seed, drop=None):
    """A CSV or NPZ table with the task's target columns (real, or 0/1 labels), split at random."""
    remedy = task.target_remedy
    if spec.lower() in BUILT_IN:
        raise DataError(f"{spec.lower()} has class labels, not {task} targets; a {task} loss trains on a .csv or "
                        f".npz table of your own, and {spec.lower()} trains with --loss cross-entropy")
    if suffix == ".csv":
        X, Y, feature_names, names = read_csv_targets(spec, targets=targets, remedy=remedy, drop=drop)
    elif suffix == ".npz":
        arrays = read_npz(spec)
        X = _check_table_features(arrays["X"], spec)
        Y, names = _npz_targets(arrays["y"], len(X), spec, remedy)
        feature_names = None
    else:
        check_dataset_name(spec)
    task.check_table_targets(Y, names, spec)
    train, test = random_split(len(Y), test_fraction, seed)
    return Dataset(Path(spec).stem, X[train], Y[train], X[test], Y[test], np.array(names, dtype=str),
                   image_shape=None, feature_names=feature_names, kind="tabular", task=task)


def _npz_targets(y, n, path, remedy):
    """An NPZ's ``y`` as an (n, k) float64 array of finite numbers, and its column names."""
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: y has dtype {y.dtype}; {remedy}")
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
        raise DataError(f"{path}: y has shape {y.shape}; pass targets of shape (n,) or (n, k)")
    if len(y) != n:
        raise DataError(f"{path}: X has {n} samples but y has {len(y)} rows; pass one target row per sample")
    Y = np.asarray(y, dtype=np.float64).reshape(n, -1)
    if not np.isfinite(Y).all():
        row, col = np.argwhere(~np.isfinite(Y))[0]
        raise DataError(f"{path}: target at row {row}, column {col} is NaN or infinite; replace or drop it")
    names = ["y"] if y.ndim == 1 else [f"y{j}" for j in range(Y.shape[1])]
    return Y, names


def random_split(n, test_fraction, seed):
    """Indices of a seeded split holding out ``round(test_fraction * n)`` of ``n`` rows (at least one kept).

    For targets without classes (regression, multilabel).  Both index arrays
    are sorted, so samples keep their file order.
    """
    n_test = min(int(round(test_fraction * n)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]).astype(np.intp), np.sort(order[:n_test]).astype(np.intp)


def _split_table(name, X, labels, feature_names, test_fraction, seed, path):
    y, classes = encode_labels(labels, path)
    if len(y) != len(X):
        raise DataError(f"{path}: X has {len(X)} samples but y has {len(y)} labels; pass one label per sample")
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset(name, X[train], y[train], X[test], y[test], classes,
                   image_shape=None, feature_names=feature_names, kind="tabular")


def _check_table_features(X, path):
    if X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X has dtype {X.dtype}; features must be numbers, save X.astype(float)")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: X has shape {X.shape}; it must be 2-D (samples x features) and non-empty")
    return _finite_features(X, path)


def _finite_features(X, path):
    """``X`` as float64, refusing NaN and inf (only float input can hold them)."""
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise DataError(f"{path}: feature value at row {row}, column {col} is NaN or infinite; replace or drop it")
    return np.asarray(X, dtype=np.float64)


def encode_labels(labels, source):
    """Map labels to indices into their sorted distinct values.

    Text that reads as integers (``"3"``, or ``"3.0"`` as pandas writes
    integral floats) counts as integers, so a CSV's label column gives the
    same classes as an integer ``y``.

    Parameters
    ----------
    labels : list of str, or ndarray of shape (n,)
        Integers, integral floats, booleans or strings.
    source : str
        Named in error messages.

    Returns
    -------
    y : ndarray of shape (n,), intp
        ``classes[y] == labels``.
    classes : ndarray of shape (K,)
        Sorted distinct labels (int64 or str), ``K >= 2``.
    """
    if isinstance(labels, list):
        values = _text_labels(labels, source)
    else:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise DataError(f"{source}: labels have shape {labels.shape}; pass one label per sample, shape (n,)")
        values = _text_labels(labels.tolist(), source) if labels.dtype.kind == "U" else _numeric_labels(labels, source)
    if len(values) == 0:
        raise DataError(f"{source} holds no samples; pass at least one sample per class")
    classes, y = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{source} has a single class ({classes.tolist()[0]!r}); a classifier needs samples of at least two classes")
    if classes.dtype == object:
        classes = classes.astype(str)
    return y.astype(np.intp), classes


def _numeric_labels(labels, source):
    if labels.dtype.kind in "biu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        wide = labels.astype(np.float64)     # compared in float16, 2**53 would overflow (a RuntimeWarning)
        integral = np.isfinite(wide).all() and (wide == np.round(wide)).all() and (np.abs(wide) <= 2**53).all()
        if not integral:
            raise DataError(f"{source}: labels hold non-integer numbers; use integer or text class labels")
        return labels.astype(np.int64)
    raise DataError(f"{source}: labels have dtype {labels.dtype}; use integers or strings")


def _text_labels(labels, source):
    """Integers where every label is the text of one, else the strings themselves.

    Strings stay Python objects until the distinct classes are known, so one
    overlong label cannot make a fixed-width array of n copies of its width.
    """
    for text in labels:
        if len(text) > MAX_LABEL_CHARS:
            raise DataError(f"{source}: a label is {len(text)} characters long (limit {MAX_LABEL_CHARS}); is the label column the right one? Choose it with --target")
    numbers = _integers_from_text(labels)
    if numbers is not None:
        return numbers
    values = np.empty(len(labels), dtype=object)
    values[:] = [str(text) for text in labels]
    return values


def _integers_from_text(texts):
    """int64 labels if every text is an integer ("3") or an integral float ("3.0", as pandas writes), else None."""
    try:
        return np.array([int(text) for text in texts], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        numbers = [float(text) for text in texts]
    except ValueError:
        return None
    if all(number.is_integer() and abs(number) <= 2**53 for number in numbers):
        return np.array(numbers).astype(np.int64)
    return None


def stratified_split(y, test_fraction, seed):
    """Indices of a seeded split that holds out ``test_fraction`` of every class.

    Each class ``c`` of size ``n_c`` sends ``round(test_fraction * n_c)`` of its
    samples, chosen by ``default_rng(seed)``, to the test set, but always keeps
    at least one for training.  Both index arrays are sorted, so samples keep
    their file order.

    Returns
    -------
    train, test : ndarray of intp
    """
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test = min(int(round(test_fraction * len(members))), len(members) - 1)
        test.append(members[:n_test])
    test = np.sort(np.concatenate(test)).astype(np.intp)
    train = np.setdiff1d(np.arange(len(y)), test).astype(np.intp)
    return train, test
