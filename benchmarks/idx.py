"""A tiny reader for the original MNIST IDX gzip files (big-endian header, then raw bytes)."""

import gzip
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def read_idx(path):
    """The array stored in one IDX file: images as (n, rows·cols) uint8, labels as (n,) uint8."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, count = np.frombuffer(raw, ">u4", 2)
    if magic == IMAGE_MAGIC:
        rows, cols = np.frombuffer(raw, ">u4", 2, offset=8)
        return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows * cols)
    if magic == LABEL_MAGIC:
        return np.frombuffer(raw, np.uint8, offset=8)
    raise ValueError(f"{path} is not an IDX image or label file (magic {magic})")


def load_mnist(folder=DATA / "mnist", dtype=np.float32):
    """``(X_train, y_train, X_test, y_test)`` with pixels scaled to [0, 1] in ``dtype``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: clone the repository with ../shared beside it")

    def images(name):
        X = read_idx(folder / f"{name}-images-idx3-ubyte.gz").astype(dtype)
        X *= dtype(1 / 255)
        return X

    def labels(name):
        return read_idx(folder / f"{name}-labels-idx1-ubyte.gz").astype(np.int64)

    return images("train"), labels("train"), images("t10k"), labels("t10k")
