"""load_dataset / load_features on the built-in datasets, and where MNIST files are looked up."""

import gzip
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

from handgrad.data import datasets
from handgrad.data.loaders import Dataset, digits_arrays, load_dataset, load_features, stratified_split
from handgrad.errors import DataError

FILE_NAMES = [name for name, _ in datasets.DATASETS["mnist"].files.values()]


@pytest.fixture(autouse=True)
def isolated_lookup(tmp_path, monkeypatch):
    """A private cache, no $HANDGRAD_DATA, and a mirror that refuses connections."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HANDGRAD_DATA", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HANDGRAD_MIRROR", f"http://127.0.0.1:{port}/")


def idx_gz(array, dims=None):
    array = np.asarray(array, dtype=np.uint8)
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return gzip.compress(header + array.tobytes(), mtime=0)


def fake_mnist(root, n_train=6, n_test=4, labels_train=None, images_test_shape=(28, 28)):
    """Write a tiny MNIST-layout dataset under ``root/mnist`` and return ``root``."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels_train = np.arange(n_train) % 10 if labels_train is None else labels_train
    files = {
        "train-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx_gz(labels_train),
        "t10k-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (n_test, *images_test_shape))),
        "t10k-labels-idx1-ubyte.gz": idx_gz(np.arange(n_test) % 10),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return root


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_datasets_load_raw_pixels_and_official_split(shared_data, name):
    ds = load_dataset(name, data_dir=shared_data, download=False)
    assert isinstance(ds, Dataset) and ds.name == name and ds.kind == "image"
    assert ds.X_train.shape == (60000, 784) and ds.X_test.shape == (10000, 784)
    assert ds.X_train.dtype == np.uint8 and ds.y_train.dtype == np.intp      # pixels as stored: 47 MB, not 376
    assert ds.X_train.min() == 0 and ds.X_train.max() == 255
    assert ds.image_shape == (28, 28) and ds.feature_names is None
    np.testing.assert_array_equal(ds.classes, np.arange(10))
    # Both datasets are balanced: 6000 training and 1000 test images per class
    # for Fashion-MNIST, between 5421 and 6742 per class for MNIST.
    assert np.bincount(ds.y_train).min() >= 5421 and np.bincount(ds.y_test).min() >= 892


def test_mnist_matches_its_published_statistics(shared_data):
    ds = load_dataset("mnist", data_dir=shared_data, download=False)
    # The normalisation constants everyone uses: mean 0.1307, std 0.3081.
    assert ds.X_train.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert ds.X_train.std() / 255 == pytest.approx(0.3081, abs=1e-4)
    np.testing.assert_array_equal(ds.y_train[:8], [5, 0, 4, 1, 9, 2, 1, 3])


def test_digits_default_is_a_seeded_stratified_split():
    ds = load_dataset("digits", test_fraction=0.25, seed=3)
    assert ds.name == "digits" and ds.kind == "image" and ds.image_shape == (8, 8)
    assert ds.n_features == 64 and ds.n_classes == 10
    assert len(ds.X_train) + len(ds.X_test) == 1797
    assert len(ds.X_test) == pytest.approx(0.25 * 1797, abs=10)
    assert ds.X_train.max() == 16 and ds.X_train.dtype == np.float64
    # Every class keeps its share in both parts.
    train_share = np.bincount(ds.y_train) / np.bincount(np.concatenate([ds.y_train, ds.y_test]))
    np.testing.assert_allclose(train_share, 0.75, atol=0.02)
    again = load_dataset("digits", test_fraction=0.25, seed=3)
    other = load_dataset("digits", test_fraction=0.25, seed=4)
    np.testing.assert_array_equal(again.X_test, ds.X_test)
    assert not np.array_equal(other.X_test, ds.X_test)


def test_digits_are_scikit_learns_digits_read_without_importing_scikit_learn():
    from sklearn.datasets import load_digits

    X, y = digits_arrays()
    expected_X, expected_y = load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, expected_X)
    np.testing.assert_array_equal(y, expected_y)
    assert X.dtype == np.float64 and X.shape == (1797, 64)
    # Importing sklearn.datasets costs seconds; `handgrad train` on digits must not pay it.
    code = ("import sys; from handgrad.data.loaders import load_dataset; load_dataset('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stratified_split_keeps_one_sample_of_each_class_for_training():
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    train, test = stratified_split(y, 0.5, seed=0)
    assert sorted(np.concatenate([train, test])) == list(range(7))
    assert set(y[train]) == {0, 1, 2}
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_zero_test_fraction_gives_an_empty_test_set():
    ds = load_dataset("digits", test_fraction=0.0)
    assert ds.X_test.shape == (0, 64) and len(ds.X_train) == 1797


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2])
def test_test_fraction_outside_unit_interval_is_refused(fraction):
    with pytest.raises(DataError, match="test_fraction"):
        load_dataset("digits", test_fraction=fraction)


def test_unknown_spec_and_misplaced_target_are_refused():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'; use digits"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="not a .csv file"):
        load_dataset("digits", target="label")


def test_lookup_prefers_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    roots = {where: tmp_path / where for where in ("arg", "env", "cache/handgrad")}
    for root in roots.values():
        (root / "mnist").mkdir(parents=True)
    for name in FILE_NAMES:
        (roots["cache/handgrad"] / "mnist" / name).touch()
    (roots["env"] / "mnist" / FILE_NAMES[0]).touch()
    (roots["env"] / "mnist" / FILE_NAMES[1]).touch()
    (roots["arg"] / "mnist" / FILE_NAMES[0]).touch()
    monkeypatch.setenv("HANDGRAD_DATA", str(roots["env"]))
    found = datasets.locate("mnist", data_dir=roots["arg"], download=False)
    assert [found[role].parent.parent for role in ("train_images", "train_labels", "test_images", "test_labels")] == [
        roots["arg"], roots["env"], roots["cache/handgrad"], roots["cache/handgrad"]]


def test_cache_dir_defaults_to_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / ".cache" / "handgrad"


def test_missing_files_without_download_name_files_and_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HANDGRAD_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "arg", download=False)
    message = str(info.value)
    for name in FILE_NAMES:
        assert name in message
    for folder in (tmp_path / "arg", tmp_path / "env", tmp_path / "cache" / "handgrad"):
        assert str(folder / "fashion-mnist") in message


def test_fake_mnist_loads_with_its_own_shapes(tmp_path):
    ds = load_dataset("mnist", data_dir=fake_mnist(tmp_path), download=False)
    assert ds.X_train.shape == (6, 784) and ds.X_test.shape == (4, 784)
    np.testing.assert_array_equal(ds.y_train, np.arange(6))


def test_handgrad_data_environment_variable_is_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("HANDGRAD_DATA", str(fake_mnist(tmp_path / "env", n_train=3)))
    ds = load_dataset("MNIST", download=False)
    assert ds.name == "mnist" and ds.X_train.shape == (3, 784)


@pytest.mark.parametrize("damage, message", [
    ({"labels_train": np.array([0, 1, 2, 3, 4, 12])}, "outside the digits 0..9"),
    ({"labels_train": np.arange(5)}, "has 5 labels but"),
    ({"images_test_shape": (14, 56)}, r"\(14, 56\) images but the training images are \(28, 28\)"),
])
def test_inconsistent_mnist_files_are_refused(tmp_path, damage, message):
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", data_dir=fake_mnist(tmp_path, **damage), download=False)


def test_images_and_labels_swapped_are_refused(tmp_path):
    root = fake_mnist(tmp_path)
    folder = root / "mnist"
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    swapped = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(swapped)
    with pytest.raises(DataError, match="not a stack of images"):
        load_dataset("mnist", data_dir=root, download=False)


def test_load_features_reads_idx_images_flattened(shared_data):
    X = load_features(shared_data / "fashion-mnist" / "t10k-images-idx3-ubyte.gz")
    assert X.shape == (10000, 784) and X.dtype == np.float64 and X.max() == 255


def test_load_features_refuses_an_idx_label_file(shared_data):
    with pytest.raises(DataError, match="not images"):
        load_features(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")


@pytest.mark.parametrize("typo, nearest", [("mnst", "mnist"), ("fashion_mnist", "fashion-mnist"),
                                           ("Digts", "digits"), ("fashion", "fashion-mnist")])
def test_a_mistyped_name_is_quoted_as_given_with_the_nearest_name(typo, nearest):
    with pytest.raises(DataError) as info:
        load_dataset(typo)
    assert str(info.value).startswith(f"unknown dataset {typo!r} (did you mean {nearest}?);")


def test_the_test_split_alone_needs_only_the_test_files(tmp_path):
    root = fake_mnist(tmp_path, n_train=6, n_test=4)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (root / "mnist" / name).unlink()
    ds = load_dataset("mnist", data_dir=root, download=False, parts=("test",))
    assert ds.X_test.shape == (4, 784) and ds.X_train.shape == (0, 784) and len(ds.y_train) == 0
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=root, download=False, parts=("train",))
    assert "train-images-idx3-ubyte.gz" in str(info.value) and "t10k" not in str(info.value)


def test_fashion_mnist_carries_its_class_names(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "mnist").rename(tmp_path / "fashion-mnist")
    ds = load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert ds.class_names == datasets.DATASETS["fashion-mnist"].class_names and ds.class_names[9] == "Ankle boot"
    assert load_dataset("digits").class_names is None
