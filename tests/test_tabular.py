"""The user's own data: CSV and NPZ through load_dataset and load_features."""

import io
import zipfile

import numpy as np
import pytest

from handgrad.data import tabular
from handgrad.data.loaders import encode_labels, load_dataset, load_features
from handgrad.errors import DataError


def write_csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


IRIS_LIKE = "sepal,petal,species\n" + "".join(
    f"{i * 0.5},{i % 3 + 0.25},{['setosa', 'virginica', 'versicolor'][i % 3]}\n" for i in range(30))


def test_csv_with_text_labels_gives_sorted_classes_and_indices(tmp_path):
    ds = load_dataset(write_csv(tmp_path, IRIS_LIKE), test_fraction=0.2, seed=1)
    assert ds.name == "data" and ds.kind == "tabular" and ds.image_shape is None
    assert ds.feature_names == ["sepal", "petal"]
    assert ds.classes.tolist() == ["setosa", "versicolor", "virginica"]
    X = np.vstack([ds.X_train, ds.X_test])
    labels = ds.classes[np.concatenate([ds.y_train, ds.y_test])]
    # Each row keeps its own label: row i has sepal 0.5 i and species i mod 3.
    expected = np.array(["setosa", "virginica", "versicolor"])[(X[:, 0] / 0.5).astype(int) % 3]
    np.testing.assert_array_equal(labels, expected)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]


def test_csv_target_column_can_be_anywhere(tmp_path):
    path = write_csv(tmp_path, "label,a,b\n1,0.5,2\n0,1.5,3\n1,2.5,4\n0,3.5,5\n")
    ds = load_dataset(path, target="label", test_fraction=0)
    assert ds.feature_names == ["a", "b"]
    np.testing.assert_array_equal(ds.classes, [0, 1])
    np.testing.assert_array_equal(ds.y_train, [1, 0, 1, 0])
    np.testing.assert_array_equal(ds.X_train[:, 0], [0.5, 1.5, 2.5, 3.5])


def test_integer_text_labels_sort_numerically(tmp_path):
    path = write_csv(tmp_path, "x,y\n1,10\n2,9\n3,10\n4,9\n5,100\n6,100\n")
    ds = load_dataset(path, test_fraction=0)
    assert ds.classes.tolist() == [9, 10, 100]


def test_integral_float_text_labels_are_integers_but_fractions_stay_text(tmp_path):
    ds = load_dataset(write_csv(tmp_path, "x,y\n1,1.0\n2,0.0\n3,1\n"), test_fraction=0)
    assert ds.classes.tolist() == [0, 1] and ds.y_train.tolist() == [1, 0, 1]
    ds = load_dataset(write_csv(tmp_path, "x,y\n1,1.5\n2,0.0\n3,nan\n", name="f.csv"), test_fraction=0)
    assert ds.classes.tolist() == ["0.0", "1.5", "nan"]


def test_csv_tolerates_bom_quotes_spaces_and_blank_lines(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes('\ufeff"a", b ,"the label"\r\n 1.5 ,2,"x, y"\r\n\r\n3,4e1,z\r\n'.encode("utf-8"))
    ds = load_dataset(path, test_fraction=0)
    assert ds.feature_names == ["a", "b"]
    np.testing.assert_array_equal(ds.X_train, [[1.5, 2], [3, 40]])
    assert ds.classes.tolist() == ["x, y", "z"]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("a,b,label\n", "no rows"),
    ("a,b,label\n1,2,x\n3,4,x\n", "single class"),
    ("a,b,label\n1,,x\n3,4,y\n", "line 2, column 'b': missing value"),
    ("a,b,label\n1,2,x\n3,four,y\n", "line 3, column 'b': 'four' is not a number"),
    ("a,b,label\n1,2,x\n3,nan,y\n", "line 3, column 'b': 'nan' is not finite"),
    ("a,b,label\n1,2,x\n3,-inf,y\n", "not finite"),
    ("a,b,label\n1,2,x\n3,4\n", "line 3 has 2 fields but the header has 3"),
    ("a,b,label\n1,2,\n3,4,y\n", "label column 'label' is empty"),
    ("a,a,label\n1,2,x\n3,4,y\n", "repeats the column names 'a'"),
    ("a,,label\n1,2,x\n3,4,y\n", "column without a name"),
    ("1,2,0\n3,4,1\n", "starts with numbers"),
    ("a;b;label\n1;2;x\n", "single column"),
])
def test_bad_csv_files_raise_one_line_data_errors(tmp_path, text, message):
    with pytest.raises(DataError, match=message) as info:
        load_dataset(write_csv(tmp_path, text))
    assert "\n" not in str(info.value)


def test_csv_read_in_blocks_keeps_rows_and_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "_BLOCK_ROWS", 3)
    rows = "".join(f"{i},{i % 2}\n" for i in range(10))
    ds = load_dataset(write_csv(tmp_path, "x,label\n" + rows), test_fraction=0)
    np.testing.assert_array_equal(ds.X_train[:, 0], np.arange(10))
    np.testing.assert_array_equal(ds.y_train, np.arange(10) % 2)
    with pytest.raises(DataError, match="line 10, column 'x': 'bad'"):
        load_features(write_csv(tmp_path, "x\n" + "1\n" * 8 + "bad\n", name="f.csv"))


def test_pandas_default_header_is_accepted(tmp_path):
    ds = load_dataset(write_csv(tmp_path, "0,1,2\n1.5,2,a\n3,4,b\n"), test_fraction=0)
    assert ds.feature_names == ["0", "1"]


def test_missing_target_column_lists_the_columns(tmp_path):
    with pytest.raises(DataError, match="no column 'kind'; choose --target from: 'sepal', 'petal', 'species'"):
        load_dataset(write_csv(tmp_path, IRIS_LIKE), target="kind")


def test_non_utf8_and_missing_files_are_data_errors(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,label\n1,2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(path)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "absent.npz")


def test_overlong_text_label_is_refused(tmp_path):
    text = "a,label\n1,x\n2," + "y" * 1000 + "\n"
    with pytest.raises(DataError, match="1000 characters long"):
        load_dataset(write_csv(tmp_path, text))


def test_load_features_takes_all_columns_or_the_named_ones(tmp_path):
    path = write_csv(tmp_path, "id,b,a,species\n7,2,1,cat\n8,4,3,dog\n")
    np.testing.assert_array_equal(load_features(path, feature_names=["a", "b"]), [[1, 2], [3, 4]])
    with pytest.raises(DataError, match="column 'species': 'cat' is not a number"):
        load_features(path)
    with pytest.raises(DataError, match="lacks the feature columns 'c'"):
        load_features(path, feature_names=["a", "c"])
    plain = write_csv(tmp_path, "u,v\n1,2\n3,4\n5,6\n", name="plain.csv")
    np.testing.assert_array_equal(load_features(plain), [[1, 2], [3, 4], [5, 6]])


def test_csv_and_npz_of_the_same_data_load_identically(tmp_path, rng):
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    rows = "".join(",".join(repr(float(v)) for v in row) + f",{label}\n" for row, label in zip(X, y))
    csv_ds = load_dataset(write_csv(tmp_path, "a,b,c,y\n" + rows, name="d.csv"), seed=5)
    npz_ds = load_dataset(tmp_path / "d.npz", seed=5)
    for field in ("X_train", "y_train", "X_test", "y_test", "classes"):
        np.testing.assert_array_equal(getattr(csv_ds, field), getattr(npz_ds, field))
    assert npz_ds.feature_names is None and npz_ds.name == "d"


def test_npz_string_and_float_labels(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    np.savez(tmp_path / "s.npz", X=X, y=np.array(["b", "a", "b", "a", "c", "c"]))
    assert load_dataset(tmp_path / "s.npz").classes.tolist() == ["a", "b", "c"]
    np.savez(tmp_path / "f.npz", X=X, y=np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0]))
    assert load_dataset(tmp_path / "f.npz").classes.tolist() == [1, 2]
    np.savez(tmp_path / "g.npz", X=X, y=np.array([0.5, 1.0, 0.5, 1.0, 0.5, 1.0]))
    with pytest.raises(DataError, match="non-integer"):
        load_dataset(tmp_path / "g.npz")


def test_npz_fortran_order_and_big_endian_arrays_read_correctly(tmp_path, rng):
    X = np.asfortranarray(rng.normal(size=(5, 3))).astype(">f4")
    np.savez(tmp_path / "f.npz", X=X, y=np.array([0, 1, 0, 1, 1]))
    np.testing.assert_array_equal(load_features(tmp_path / "f.npz"), X.astype(np.float64))


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.zeros((3, 2))}, "no array 'y'"),
    ({"X": np.zeros(3), "y": np.arange(3)}, "must be 2-D"),
    ({"X": np.zeros((0, 2)), "y": np.arange(0)}, "must be 2-D .* non-empty"),
    ({"X": np.zeros((3, 2)), "y": np.arange(4)}, "X has 3 samples but y has 4"),
    ({"X": np.array([["a", "b"]] * 3), "y": np.arange(3)}, "features must be numbers"),
    ({"X": np.array([[1, np.nan]] * 3), "y": np.arange(3)}, "NaN or infinite"),
    ({"X": np.zeros((3, 2)), "y": np.zeros(3)}, "single class"),
    ({"X": np.zeros((3, 2)), "y": np.zeros((3, 1))}, r"shape \(3, 1\)"),
    ({"X": np.zeros((3, 2), dtype=object), "y": np.arange(3)}, "Python objects, which are never unpickled"),
    ({"X": np.zeros((3, 2)), "y": np.array([1, "a", None], dtype=object)}, "never unpickled"),
])
def test_bad_npz_files_raise_data_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "bad.npz")


def test_npz_that_is_not_a_zip_or_is_truncated(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(tmp_path / "text.npz")
    buffer = io.BytesIO()
    np.savez(buffer, X=np.zeros((100, 4)), y=np.arange(100) % 2)
    (tmp_path / "cut.npz").write_bytes(buffer.getvalue()[:900])
    with pytest.raises(DataError):
        load_dataset(tmp_path / "cut.npz")


def test_npz_header_claiming_a_huge_array_is_refused_without_allocating(tmp_path):
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)})
    member.write(np.zeros(6).tobytes())
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("X.npy", member.getvalue())
        archive.writestr("y.npy", member.getvalue())
    with pytest.raises(DataError, match="48 bytes of data but its header"):
        load_dataset(tmp_path / "huge.npz")


def test_encode_labels_round_trips_through_classes():
    labels = np.array([3, -1, 3, 7])
    y, classes = encode_labels(labels, "test")
    np.testing.assert_array_equal(classes[y], labels)
    assert y.dtype == np.intp and classes.tolist() == [-1, 3, 7]


@pytest.mark.filterwarnings("error")
def test_float16_labels_are_classes_without_an_overflow_warning(tmp_path):
    np.savez(tmp_path / "half.npz", X=np.zeros((4, 2)), y=np.array([1, 2, 1, 2], dtype=np.float16))
    assert load_dataset(tmp_path / "half.npz", test_fraction=0).classes.tolist() == [1, 2]


# -- regression and multilabel targets -----------------------------------------------

REGRESSION = "x1,price,x2,rooms\n" + "".join(f"{i},{100 + 10 * i}.5,{i % 3},{i % 4 + 1}\n" for i in range(20))


def test_regression_targets_are_real_columns_in_the_order_named(tmp_path):
    ds = load_dataset(write_csv(tmp_path, REGRESSION), target="rooms, price", task="regression", test_fraction=0.25)
    assert ds.task == "regression" and ds.kind == "tabular"
    assert ds.classes.tolist() == ["rooms", "price"] and ds.n_outputs == 2
    assert ds.feature_names == ["x1", "x2"]
    assert ds.y_train.dtype == np.float64 and ds.y_train.shape == (15, 2) and ds.y_test.shape == (5, 2)
    X, Y = np.vstack([ds.X_train, ds.X_test]), np.vstack([ds.y_train, ds.y_test])
    np.testing.assert_array_equal(Y[:, 1], 100 + 10 * X[:, 0] + 0.5)        # each row keeps its own target
    np.testing.assert_array_equal(Y[:, 0], X[:, 0] % 4 + 1)
    default = load_dataset(write_csv(tmp_path, REGRESSION), task="regression")
    assert default.classes.tolist() == ["rooms"]                              # the last column by default


def test_the_random_split_of_a_table_is_seeded_and_keeps_file_order():
    from handgrad.data.loaders import random_split

    train, test = random_split(10, 0.3, seed=0)
    assert len(test) == 3 and sorted(np.concatenate([train, test]).tolist()) == list(range(10))
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
    assert np.array_equal(random_split(10, 0.3, seed=0)[1], test)
    assert len(random_split(1, 0.5, seed=0)[0]) == 1                         # one row stays for training


def test_npz_regression_targets_of_one_or_several_columns(tmp_path, rng):
    X = rng.standard_normal((20, 3))
    np.savez(tmp_path / "one.npz", X=X, y=X[:, 0] * 2)
    np.savez(tmp_path / "two.npz", X=X, y=np.stack([X[:, 0], X[:, 1]], axis=1).astype(np.float32))
    one = load_dataset(tmp_path / "one.npz", task="regression")
    two = load_dataset(tmp_path / "two.npz", task="regression")
    assert one.classes.tolist() == ["y"] and one.y_train.shape[1] == 1
    assert two.classes.tolist() == ["y0", "y1"] and two.y_train.dtype == np.float64
    np.savez(tmp_path / "text.npz", X=X, y=np.array(["a", "b"] * 10))
    with pytest.raises(DataError, match="y has dtype <U1; a regression loss needs numeric targets"):
        load_dataset(tmp_path / "text.npz", task="regression")
    np.savez(tmp_path / "nan.npz", X=X, y=np.where(np.arange(20) == 4, np.nan, 1.0))
    with pytest.raises(DataError, match="row 4, column 0 is NaN"):
        load_dataset(tmp_path / "nan.npz", task="regression")


@pytest.mark.parametrize("text, task, message", [
    ("x,y\n1,2\n2,cat\n", "regression", r"line 3, target column 'y': 'cat' is not a number; a regression loss"),
    ("x,y\n1,2\n2,\n", "regression", r"line 3: the target column 'y' is empty"),
    ("x,y\n1,2\n2,inf\n", "regression", r"line 3, target column 'y': 'inf' is not finite"),
    ("x,a,b\n1,0,1\n2,1,0.5\n", "multilabel", r"'b' holds 0.5 \(data row 2\).*0 \(absent\) or 1 \(present\)"),
    ("x,a,b\n1,0,1\n2,1,yes\n", "multilabel", r"'yes' is not a number; a multilabel loss needs 0/1 label columns"),
])
def test_bad_targets_raise_one_line_data_errors(tmp_path, text, task, message):
    target = "a,b" if task == "multilabel" else None
    with pytest.raises(DataError, match=message) as error:
        load_dataset(write_csv(tmp_path, text), target=target, task=task)
    assert "\n" not in str(error.value)


def test_multilabel_targets_are_0_1_columns(tmp_path):
    text = "x,a,b,c\n" + "".join(f"{i},{i % 2},{(i // 2) % 2},1\n" for i in range(12))
    ds = load_dataset(write_csv(tmp_path, text), target=["a", "b", "c"], task="multilabel", test_fraction=0)
    assert ds.task == "multilabel" and ds.classes.tolist() == ["a", "b", "c"] and ds.feature_names == ["x"]
    assert set(np.unique(ds.y_train)) == {0.0, 1.0} and ds.y_train.shape == (12, 3)


@pytest.mark.parametrize("target, message", [
    ("a,a", r"--target names the column 'a' more than once"),
    ("a,,b", r"--target names an empty column in 'a,,b'"),
    (" ", r"--target names an empty column"),
])
def test_target_lists_name_each_column_once(target, message):
    from handgrad.data.loaders import target_columns

    with pytest.raises(DataError, match=message):
        target_columns(target)
    assert target_columns(" a , b") == ["a", "b"] and target_columns(["c"]) == ["c"] and target_columns(None) is None


def test_other_tasks_refuse_built_in_datasets_and_classification_refuses_several_targets(tmp_path):
    with pytest.raises(DataError, match="digits has class labels, not regression targets"):
        load_dataset("digits", task="regression")
    with pytest.raises(DataError, match="--target names 2 columns, but a classification loss reads one"):
        load_dataset(write_csv(tmp_path, REGRESSION), target="price,rooms")
    with pytest.raises(DataError, match="unknown task 'ranking'"):
        load_dataset(write_csv(tmp_path, REGRESSION), task="ranking")
    with pytest.raises(DataError, match="no column 'prize'; choose --target from"):
        load_dataset(write_csv(tmp_path, REGRESSION), target="prize", task="regression")
