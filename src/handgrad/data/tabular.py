"""The user's own tables: CSV files with a header, and NPZ archives of ``X`` and ``y``.

Both readers return raw values; turning labels into class indices and
splitting off a test set happen in :mod:`handgrad.data.loaders`.

CSV: comma-separated, UTF-8, first line a header naming every column.  Feature
cells must be finite numbers; the label column may hold integers or any text.
Regression and multilabel targets (:func:`read_csv_targets`) are one or more
columns of finite numbers.

NPZ: arrays ``X`` (samples x features, numeric) and ``y`` (one label per
sample, numbers or strings).  The archive is parsed by
:class:`handgrad.io.files.NpyMember` rather than by ``np.load``: ``np.load``
allocates each array from the size its header claims, before reading a byte
of data, whereas ``NpyMember`` reads each member in bounded chunks and checks
the real length against the claim, so a forged header cannot make it reserve
memory.  Pickled (object) arrays are refused, never loaded.
"""

import csv
import zipfile
from itertools import islice
from operator import itemgetter

import numpy as np

from handgrad.errors import DataError
from handgrad.io.files import ARCHIVE_ERRORS, NpyError, NpyMember, os_error_message

_MAX_NAMES_SHOWN = 8


# -- CSV ---------------------------------------------------------------------

# Rows are parsed in blocks, so a large file never exists in memory as one
# Python string per cell: only the current block does, next to the float64 result.
_BLOCK_ROWS = 4096


def read_csv(path, *, target=None, drop=None):
    """Read a labelled CSV file.

    Parameters
    ----------
    path : str or Path
    target : str, optional
        Name of the label column; the last column when omitted.
    drop : list of str, optional
        Columns to leave out of the features (an id, a column that leaks the label).

    Returns
    -------
    X : ndarray of shape (n, d), float64
    labels : list of str, length n
        The label column's cells, stripped of surrounding spaces.
    feature_names : list of str, length d
    """
    rows = _csv_rows(path)
    header = next(rows)
    if len(header) < 2:
        raise DataError(f"{path} has a single column {header[0]!r}; a labelled CSV needs feature columns and a label column, separated by commas")
    if target is None:
        label_col = len(header) - 1
    elif target in header:
        label_col = header.index(target)
    else:
        raise DataError(f"{path} has no column {target!r}; choose --target from: {_names(header)}")
    feature_cols = _feature_columns(path, header, [label_col], drop)
    hint = "use --target to name a text label column, or --drop to leave a column out"
    blocks, labels = [], []
    for lines, block in _blocks(rows, path):
        blocks.append(_numeric_columns(path, header, block, lines, feature_cols, hint))
        labels.extend(_label_cells(path, header[label_col], [row[label_col] for row in block], lines))
    return np.concatenate(blocks), labels, [header[j] for j in feature_cols]


def read_csv_targets(path, *, targets, remedy, drop=None):
    """Read a CSV whose target columns hold numbers (regression and multilabel targets).

    Parameters
    ----------
    path : str or Path
    targets : list of str, or None
        The target columns, in this order; the last column when None.
    remedy : str
        What to do about a target cell that is not a number, for the message.
    drop : list of str, optional
        Columns to leave out of the features.

    Returns
    -------
    X : ndarray of shape (n, d), float64
        Every other column not dropped, in file order.
    Y : ndarray of shape (n, k), float64
        The target columns; finite.
    feature_names, target_names : lists of str, lengths d and k
    """
    rows = _csv_rows(path)
    header = next(rows)
    targets = [header[-1]] if targets is None else list(targets)
    absent = [name for name in targets if name not in header]
    if absent:
        raise DataError(f"{path} has no column {absent[0]!r}; choose --target from: {_names(header)}")
    target_cols = [header.index(name) for name in targets]
    feature_cols = _feature_columns(path, header, target_cols, drop)
    hint = "use --target to name the column(s) to predict, or --drop to leave a column out"
    X_blocks, Y_blocks = [], []
    for lines, block in _blocks(rows, path):
        X_blocks.append(_numeric_columns(path, header, block, lines, feature_cols, hint))
        Y_blocks.append(_target_columns(path, header, block, lines, target_cols, remedy))
    return np.concatenate(X_blocks), np.concatenate(Y_blocks), [header[j] for j in feature_cols], targets


def _feature_columns(path, header, target_cols, drop):
    """The positions of the feature columns: every column but the targets and those in ``drop``."""
    drop = list(drop or [])
    absent = [name for name in drop if name not in header]
    if absent:
        raise DataError(f"{path} has no column {absent[0]!r} to drop; choose --drop from: {_names(header)}")
    targets = [header[j] for j in target_cols]
    both = [name for name in drop if name in targets]
    if both:
        raise DataError(f"--drop names the target column {both[0]!r}; a target is never a feature, "
                        "so drop only feature columns")
    dropped = {header.index(name) for name in drop}
    features = [j for j in range(len(header)) if j not in target_cols and j not in dropped]
    if not features:
        what = "--target and --drop name" if drop else "--target names"
        raise DataError(f"{path}: {what} every column, leaving no features; name only the column(s) to "
                        "predict and to leave out")
    return features


def read_csv_header(path):
    """The column names of a CSV file's header (its first line), stripped of surrounding spaces."""
    rows = _csv_rows(path)
    try:
        return next(rows)
    finally:
        rows.close()


def _target_columns(path, header, rows, lines, cols, remedy):
    """The cells of ``cols`` as finite float64; a one-line error naming the first bad target cell."""
    cells = [[row[j].strip() for j in cols] for row in rows]
    for line, row in zip(lines, cells):
        for j, cell in zip(cols, row):
            if not cell:
                raise DataError(f"{path} line {line}: the target column {header[j]!r} is empty; "
                                "fill in or drop that row")
    try:
        Y = np.array(cells, dtype=np.float64)
    except ValueError:
        for line, row in zip(lines, cells):
            for j, cell in zip(cols, row):
                if not _is_number(cell):
                    raise DataError(f"{path} line {line}, target column {header[j]!r}: {_short(cell)!r} is not a "
                                    f"number; {remedy}") from None
        raise DataError(f"{path} holds target values that numpy cannot read as numbers; {remedy}") from None
    if not np.isfinite(Y).all():
        i, k = np.argwhere(~np.isfinite(Y))[0]
        raise DataError(f"{path} line {lines[i]}, target column {header[cols[k]]!r}: {_short(cells[i][k])!r} is not "
                        "finite; replace NaN/inf with a number or drop the row")
    return Y


def read_csv_features(path, *, feature_names=None):
    """Read the feature columns of a CSV file (for prediction).

    Every column is a feature unless ``feature_names`` is given; then exactly
    those columns are taken, in that order, and others (a label column, an id)
    are ignored.

    Returns
    -------
    X : ndarray of shape (n, d), float64
    """
    rows = _csv_rows(path)
    header = next(rows)
    if feature_names is None:
        cols = list(range(len(header)))
    else:
        absent = [name for name in feature_names if name not in header]
        if absent:
            raise DataError(f"{path} lacks the feature columns {_names(absent)}; the model was trained on {_names(feature_names)}")
        cols = [header.index(name) for name in feature_names]
    hint = "keep only the feature columns the model was trained on"
    return np.concatenate([_numeric_columns(path, header, block, lines, cols, hint) for lines, block in _blocks(rows, path)])


def _csv_rows(path):
    """Yield the cleaned header, then ``(line number, row)`` for every non-blank data row."""
    line, reader = 1, None
    try:
        # utf-8-sig drops the byte-order mark that spreadsheet programs write.
        with open(path, encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise DataError(f"{path} is empty; a CSV needs a header line naming its columns, then one row per sample")
            header = [cell.strip() for cell in header]
            _check_header(path, header)
            yield header
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank lines carry no sample
                if len(row) != len(header):
                    raise DataError(f"{path} line {line} has {len(row)} fields but the header has {len(header)}; every row needs one value per column")
                yield line, row
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; pass a .csv file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (after line {line}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num} is not valid CSV ({exc}); check quotes and field lengths") from None
    except OSError as exc:
        raise DataError(f"cannot read {os_error_message(exc, path)}") from None


def _blocks(rows, path):
    """Group ``(line, row)`` pairs into ``(lines, rows)`` tuples of up to ``_BLOCK_ROWS`` rows."""
    empty = True
    while block := list(islice(rows, _BLOCK_ROWS)):
        empty = False
        lines, cells = zip(*block)
        yield lines, cells
    if empty:
        raise DataError(f"{path} has a header but no rows; add at least one sample per class")


def _label_cells(path, column, cells, lines):
    labels = [cell.strip() for cell in cells]
    for line, label in zip(lines, labels):
        if not label:
            raise DataError(f"{path} line {line}: the label column {column!r} is empty; fill in or drop that row")
    return labels


def _check_header(path, header):
    if len(set(header)) != len(header):
        repeated = sorted({name for name in header if header.count(name) > 1})
        raise DataError(f"{path} repeats the column names {_names(repeated)}; give every column a distinct name")
    if "" in header:
        raise DataError(f"{path} has a column without a name (column {header.index('') + 1}); name every column in the header")
    # A first line of numbers is a sample, not a header, unless it is the
    # 0, 1, 2, ... that pandas writes for unnamed columns.
    if all(_is_number(name) for name in header) and header != [str(j) for j in range(len(header))]:
        raise DataError(f"{path} starts with numbers, not column names; add a header line such as 'x1,x2,...,label'")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_columns(path, header, rows, lines, cols, hint):
    """Parse the cells of ``cols`` in ``rows`` as finite float64; name the first bad cell otherwise.

    The whole block goes to numpy at once (several times faster than a
    column at a time); only when that fails are cells inspected one by one.
    """
    cells = list(map(_picker(cols), rows))
    try:
        X = np.array(cells, dtype=np.float64)
    except ValueError:
        _raise_first_bad_cell(path, header, cols, cells, lines, hint)
    if not np.isfinite(X).all():
        i, k = np.argwhere(~np.isfinite(X))[0]
        raise DataError(f"{path} line {lines[i]}, column {header[cols[k]]!r}: {_short(cells[i][k])!r} is not finite; replace NaN/inf with a number or drop the row")
    return X


def _picker(cols):
    """A function returning a row's cells in ``cols``, always as a tuple."""
    if len(cols) == 1:
        j = cols[0]
        return lambda row: (row[j],)
    return itemgetter(*cols)


def _raise_first_bad_cell(path, header, cols, cells, lines, hint):
    for line, row in zip(lines, cells):
        for j, cell in zip(cols, row):
            if not cell.strip():
                raise DataError(f"{path} line {line}, column {header[j]!r}: missing value; fill it in or drop the row")
            if not _is_number(cell):
                raise DataError(f"{path} line {line}, column {header[j]!r}: {_short(cell)!r} is not a number; features must be numeric ({hint})")
    raise DataError(f"{path} holds feature values that numpy cannot read as numbers; features must be plain decimal numbers")


def _short(text, limit=40):
    """``text`` on one line, cut to ``limit`` characters, for error messages."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _names(names):
    shown = ", ".join(repr(_short(name)) for name in names[:_MAX_NAMES_SHOWN])
    return shown + (f" and {len(names) - _MAX_NAMES_SHOWN} more" if len(names) > _MAX_NAMES_SHOWN else "")


# -- NPZ ---------------------------------------------------------------------

def read_npz(path, keys=("X", "y")):
    """Read the named arrays of an ``.npz`` file without pickle and without trusting headers.

    Returns
    -------
    dict
        ``key -> ndarray`` for each of ``keys``.

    Raises
    ------
    DataError
        Missing file, not a zip archive, a missing key, an object (pickled)
        array, or a member whose data does not match its header.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            arrays = {}
            for key in keys:
                if key + ".npy" not in members:
                    stored = sorted(name.removesuffix(".npy") for name in members)
                    raise DataError(f"{path} has no array {key!r} (it holds {_names(stored) or 'nothing'}); save it with np.savez(path, X=X, y=y)")
                with NpyMember(archive, key + ".npy") as member:
                    arrays[key] = member.read()
            return arrays
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; pass an .npz file") from None
    except DataError:
        raise
    except NpyError as exc:
        remedy = ("save numbers or fixed-width strings (e.g. y.astype(str))" if exc.pickled
                  else "the file is damaged, save it again with np.savez")
        raise DataError(f"{path}: array {key!r} {exc}; {remedy}") from None
    except ARCHIVE_ERRORS as exc:
        raise DataError(f"{path} is not a readable .npz archive ({_short(str(exc), 80)}); save it with np.savez(path, X=X, y=y)") from None
