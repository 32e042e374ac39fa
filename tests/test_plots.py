"""Plots: real PNG files of the expected size and content, written atomically, bad input refused."""

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from handgrad.errors import DataError, HandgradError
from handgrad.report.metrics import confusion_matrix
from handgrad.report.plots import (
    _weight_mosaic,
    cell_colours,
    plot_confusion_matrix,
    plot_first_layer_weights,
    plot_learning_curves,
    plot_misclassified,
    strongest_units,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _records(n_epochs, validation=True):
    records = []
    for epoch in range(n_epochs):
        record = {"epoch": epoch + 1, "train_loss": 1.0 / (epoch + 1), "train_accuracy": 1 - 0.5 / (epoch + 1),
                  "lr": 1e-3, "seconds": 0.1}
        if validation:
            record.update(val_loss=1.2 / (epoch + 1), val_accuracy=1 - 0.6 / (epoch + 1))
        records.append(record)
    return records


def _read_png(path):
    """The image as (height, width, channels) floats, after checking the PNG signature."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return imread(path)


def _ink(image):
    """Share of pixels that are not white: 0 for a blank figure."""
    return float((image[..., :3] < 0.95).any(axis=-1).mean())


@pytest.mark.parametrize("validation", [True, False])
def test_learning_curves_png_has_two_panels_size(tmp_path, validation):
    path = tmp_path / "curves.png"
    plot_learning_curves(_records(8, validation), path)
    image = _read_png(path)
    assert image.shape[:2] == (400, 1000)          # figsize (10, 4) at 100 dpi
    # Both panels hold lines: the left and the right half each have ink.
    assert _ink(image[:, :500]) > 0.02 and _ink(image[:, 500:]) > 0.02


def test_learning_curves_draw_validation_only_when_recorded(tmp_path):
    with_val, without_val = tmp_path / "a.png", tmp_path / "b.png"
    plot_learning_curves(_records(8, True), with_val)
    plot_learning_curves(_records(8, False), without_val)
    # The validation curves (orange) add coloured pixels.
    def orange(image):
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        return int(((r > 0.9) & (g > 0.4) & (g < 0.6) & (b < 0.2)).sum())
    assert orange(_read_png(without_val)) == 0 < orange(_read_png(with_val))


def test_confusion_matrix_png_is_not_blank(tmp_path, rng):
    y = rng.integers(0, 10, 400)
    y_pred = np.where(rng.random(400) < 0.8, y, rng.integers(0, 10, 400))
    path = tmp_path / "cm.png"
    plot_confusion_matrix(confusion_matrix(y, y_pred, 10), [str(c) for c in range(10)], path)
    image = _read_png(path)
    side = 4 + 0.45 * 10
    assert image.shape[:2] == (round(side * 100), round((side + 1.2) * 100))
    assert image[..., :3].var() > 0.01
    # The diagonal's dark blue cells are there.
    dark_blue = (image[..., 2] > 0.3) & (image[..., 0] < 0.2)
    assert dark_blue.mean() > 0.02


def test_weight_grid_for_784_by_16_with_28_by_28_images(tmp_path, rng):
    W = rng.normal(size=(784, 16)).astype(np.float32)
    path = tmp_path / "weights.png"
    plot_first_layer_weights(W, (28, 28), path)
    image = _read_png(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].var() > 0.01


def test_weight_mosaic_places_each_unit_as_its_own_scaled_image(rng):
    W = rng.normal(size=(12, 5))
    mosaic, cols = _weight_mosaic(W, (3, 4))
    assert cols == 3                                # 5 units -> a 3 x 2 grid
    gap = 1
    for unit in range(5):
        r, c = divmod(unit, cols)
        tile = mosaic[r * (3 + gap):r * (3 + gap) + 3, c * (4 + gap):c * (4 + gap) + 4]
        np.testing.assert_allclose(tile, W[:, unit].reshape(3, 4) / np.abs(W[:, unit]).max())
    assert np.isnan(mosaic[3, :]).all()            # the gap between the rows of tiles
    assert np.isnan(mosaic[4:, 2 * (4 + gap):]).all()  # the empty sixth place


def test_weight_grid_shows_at_most_max_units(tmp_path, rng):
    few, many = tmp_path / "few.png", tmp_path / "many.png"
    W = rng.normal(size=(64, 40))
    plot_first_layer_weights(W, (8, 8), few, max_units=4)
    plot_first_layer_weights(W, (8, 8), many, max_units=40)
    assert _read_png(few).shape[0] < _read_png(many).shape[0]


@pytest.mark.parametrize("W, shape, match", [
    (np.zeros((784, 16)), (28, 27), "784 inputs but image_shape"),
    (np.zeros(784), (28, 28), "2-D numeric array"),
    (np.zeros((784, 16)), (7, 28, 4), r"\(height, width\)"),
    (np.zeros((784, 16)), "28x28", r"\(height, width\)"),
    (np.zeros((784, 0)), (28, 28), "no hidden units"),
])
def test_weight_grid_refuses_shapes_that_do_not_fit(tmp_path, W, shape, match):
    with pytest.raises(DataError, match=match):
        plot_first_layer_weights(W, shape, tmp_path / "w.png")
    assert not list(tmp_path.iterdir())


def test_weight_grid_refuses_a_non_positive_max_units(tmp_path):
    with pytest.raises(HandgradError, match="max_units"):
        plot_first_layer_weights(np.zeros((4, 2)), (2, 2), tmp_path / "w.png", max_units=0)


def test_learning_curves_refuse_empty_or_foreign_records(tmp_path):
    with pytest.raises(HandgradError, match="history is empty"):
        plot_learning_curves([], tmp_path / "c.png")
    with pytest.raises(HandgradError, match="'train_accuracy'"):
        plot_learning_curves([{"epoch": 0, "train_loss": 1.0}], tmp_path / "c.png")


def test_confusion_matrix_plot_refuses_mismatched_names(tmp_path):
    with pytest.raises(DataError, match="one name per class"):
        plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(DataError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3), int), ["a", "b"], tmp_path / "cm.png")


def test_refused_input_leaves_an_existing_plot_alone(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion_matrix(np.array([[3, 1], [0, 2]]), ["a", "b"], path)
    before = path.read_bytes()
    with pytest.raises(DataError):
        plot_confusion_matrix(np.array([[3, -1], [0, 2]]), ["a", "b"], path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]   # no temporary file left behind


def test_plots_create_their_folder(tmp_path):
    path = tmp_path / "new" / "deeper" / "curves.png"
    plot_learning_curves(_records(2), path)
    assert _read_png(path).shape[:2] == (400, 1000)


def test_unwritable_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HandgradError, match="cannot write") as info:
        plot_learning_curves(_records(2), blocker / "curves.png")
    assert "\n" not in str(info.value)


def test_plotting_never_loads_pyplot():
    # pyplot picks a GUI backend and keeps global figures; the plots must work without it.
    code = ("import sys, numpy as np; from handgrad.report.plots import plot_confusion_matrix as p; "
            "import tempfile, os; d = tempfile.mkdtemp(); p(np.eye(2, dtype=int), ['a', 'b'], os.path.join(d, 'c.png')); "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _white(rgba):
    return np.allclose(rgba[:3], 1.0)


def test_errors_stay_visible_at_98_percent_accuracy(tmp_path):
    cm = np.diag([490, 495, 485]).astype(np.int64)
    cm[0, 1], cm[2, 0], cm[2, 1] = 10, 1, 14                      # 98.3% accuracy
    colours, scale = cell_colours(cm)
    assert scale == pytest.approx(14 / 500)
    # The worst confusion is a saturated red, the rarest one still tinted, an empty cell white.
    red = colours[2, 1]
    assert red[0] > 0.5 and red[1] < 0.2 and red[2] < 0.2
    assert not _white(colours[2, 0]) and _white(colours[1, 0]) and _white(colours[0, 2])
    # On one linear count scale (the old figure) the 10-sample cell would be 2% of the way to full colour.
    assert colours[0, 1][1] < 0.5
    path = tmp_path / "cm.png"
    plot_confusion_matrix(cm, ["a", "b", "c"], path, title="toy data, 4-8-3 relu")
    image = _read_png(path)
    reds = (image[..., 0] > 0.5) & (image[..., 1] < 0.25) & (image[..., 2] < 0.25)
    assert reds.mean() > 0.01


def test_learning_curves_name_what_each_curve_is(tmp_path):
    from handgrad.report.plots import TRAINING_LABEL, VALIDATION_LABEL

    assert "held out" in VALIDATION_LABEL and "minibatches" in TRAINING_LABEL
    with_title, without = tmp_path / "a.png", tmp_path / "b.png"
    plot_learning_curves(_records(4), with_title, title="digits, 64-128-10 relu")
    plot_learning_curves(_records(4), without)
    # The title is drawn: the two figures differ only there, in the top rows.
    a, b = _read_png(with_title), _read_png(without)
    differs = np.abs(a - b).sum(axis=(1, 2)) > 0
    assert differs.any() and np.flatnonzero(differs).min() < 40


def test_strongest_units_are_the_ones_with_the_largest_norm():
    W = np.zeros((4, 5))
    W[:, 1], W[:, 3], W[:, 4] = 3.0, 0.5, -2.0
    assert strongest_units(W, 3).tolist() == [1, 4, 3]
    assert strongest_units(W, 10).tolist() == [1, 4, 3, 0, 2]


def test_misclassified_grid_draws_each_image_with_its_labels(tmp_path, rng):
    few, many = tmp_path / "few.png", tmp_path / "many.png"
    images = rng.integers(0, 256, (20, 64))
    names = [str(i % 10) for i in range(20)]
    plot_misclassified(images[:3], names[:3], names[1:4], (8, 8), few)
    plot_misclassified(images, names, names[::-1], (8, 8), many, max_images=12)
    assert _read_png(few).shape[0] < _read_png(many).shape[0]
    assert _ink(_read_png(many)) > 0.1
    with pytest.raises(DataError, match="one of each per image"):
        plot_misclassified(images, names[:3], names, (8, 8), tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"shape \(n, 49\)"):
        plot_misclassified(images, names, names, (7, 7), tmp_path / "bad.png")


# -- regression and multilabel ---------------------------------------------------------

def _task_records(n_epochs, figures):
    """Records as fit writes them for a task whose figures are ``figures`` ({name: value at epoch e})."""
    records = []
    for epoch in range(1, n_epochs + 1):
        record = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch, "lr": 1e-3, "seconds": 0.1}
        for name, value in figures.items():
            record.update({f"train_{name}": value(epoch), f"val_{name}": 0.9 * value(epoch)})
        records.append(record)
    return records


@pytest.mark.parametrize("figures", [
    {"r2": lambda e: 1 - 1 / e, "rmse": lambda e: 100 / e},
    {"label_accuracy": lambda e: 1 - 0.5 / e, "subset_accuracy": lambda e: 1 - 0.8 / e},
], ids=["regression", "multilabel"])
def test_learning_curves_of_other_tasks_draw_their_own_figures_in_three_panels(tmp_path, figures):
    path = tmp_path / "curves.png"
    plot_learning_curves(_task_records(8, figures), path)
    image = _read_png(path)
    assert image.shape[:2] == (400, 1500)          # loss and the task's two figures, 5 inches each
    assert all(_ink(image[:, i * 500:(i + 1) * 500]) > 0.02 for i in range(3))


def test_an_r2_far_below_zero_in_the_first_epochs_does_not_flatten_the_rest():
    from matplotlib.figure import Figure

    from handgrad.report.plots import _clip_r2_axis

    far = _task_records(10, {"r2": lambda e: 1 - 50 / e ** 3, "rmse": lambda e: 10 / e})   # starts at −49
    near = _task_records(10, {"r2": lambda e: 1 - 1.5 / e, "rmse": lambda e: 10 / e})     # starts at −0.5
    for records, cut in ((far, True), (near, False)):
        ax = Figure().subplots()
        ax.plot([1, 10], [min(r["val_r2"] for r in records), 1])
        _clip_r2_axis(ax, records)
        assert (ax.get_ylim() == (-1, 1.05)) == cut
        assert ("cut at −1" in ax.get_ylabel()) == cut


def test_records_of_no_known_task_are_refused(tmp_path):
    with pytest.raises(HandgradError, match="'train_accuracy'.*train_r2/train_rmse"):
        plot_learning_curves([{"epoch": 1, "train_loss": 1.0, "train_r2": 0.5}], tmp_path / "c.png")


def test_predicted_against_true_is_a_scatter_per_target(tmp_path, rng):
    from handgrad.report.plots import plot_predicted_vs_true

    y = rng.standard_normal((50, 2)) * [1, 100]
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    plot_predicted_vs_true(y[:, 0], y[:, 0] + 0.1 * rng.standard_normal(50), ["price"], one, title="houses")
    plot_predicted_vs_true(y, y + rng.standard_normal((50, 2)), ["a", "b"], two)
    assert _read_png(one).shape[1] < _read_png(two).shape[1]          # one panel per target
    assert _ink(_read_png(two)) > 0.05
    with pytest.raises(DataError, match="one name per column"):
        plot_predicted_vs_true(y, y, ["a"], tmp_path / "bad.png")
    with pytest.raises(DataError, match="do not pair up"):
        plot_predicted_vs_true(y, y[:10], ["a", "b"], tmp_path / "bad.png")
    before = two.read_bytes()
    with pytest.raises(DataError, match="NaN"):
        plot_predicted_vs_true(y, np.full_like(y, np.nan), ["a", "b"], two)
    assert two.read_bytes() == before and not (tmp_path / "bad.png").exists()


def test_label_scores_are_grouped_bars_per_label(tmp_path, rng):
    from handgrad.report.metrics import multilabel_scores
    from handgrad.report.plots import plot_label_scores

    Y = rng.integers(0, 2, (100, 4))
    P = np.where(rng.random((100, 4)) < 0.9, Y, 1 - Y)
    scores = multilabel_scores(Y, P)
    path = tmp_path / "labels.png"
    plot_label_scores(scores, ["rock", "pop", "jazz", "folk"], path, title="songs")
    image = _read_png(path)
    assert image[..., :3].var() > 0.01
    blue = (image[..., 2] > 0.6) & (image[..., 0] < 0.3)     # the accuracy bars
    assert blue.mean() > 0.02
    with pytest.raises(DataError, match="one name per label"):
        plot_label_scores(scores, ["rock"], tmp_path / "bad.png")


def _drawn_figure(monkeypatch, draw):
    """The matplotlib Figure ``draw()`` saves, instead of its PNG."""
    from handgrad.report import plots

    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig))
    draw()
    return saved[0]


def test_with_an_l2_term_the_training_loss_is_drawn_without_it_beside_the_term(monkeypatch):
    from handgrad.report.plots import L2_TERM_LABEL, TRAINING_DATA_LOSS_LABEL, VALIDATION_LOSS_LABEL

    records = [{**r, "l2_term": 0.5} for r in _records(4)]
    fig = _drawn_figure(monkeypatch, lambda: plot_learning_curves(records, "unused.png"))
    loss_panel, twin = fig.axes[0], fig.axes[-1]          # the term on an axis of its own, the legend shared
    lines = {line.get_label(): line.get_ydata() for ax in (loss_panel, twin) for line in ax.get_lines()}
    assert set(lines) == {TRAINING_DATA_LOSS_LABEL, L2_TERM_LABEL, VALIDATION_LOSS_LABEL}
    assert [line.get_label() for line in twin.get_lines()] == [L2_TERM_LABEL]
    assert L2_TERM_LABEL in [text.get_text() for text in loss_panel.get_legend().get_texts()]
    np.testing.assert_allclose(lines[TRAINING_DATA_LOSS_LABEL], [r["train_loss"] - 0.5 for r in records])
    np.testing.assert_allclose(lines[L2_TERM_LABEL], 0.5)


def test_the_epoch_early_stopping_kept_is_marked_on_every_panel_and_named_under_the_title(monkeypatch):
    fig = _drawn_figure(monkeypatch, lambda: plot_learning_curves(
        _records(6), "unused.png", title="digits", kept_epoch=3, note="early stopping after epoch 6"))
    for ax in fig.axes[:2]:
        marks = [line for line in ax.get_lines() if line.get_label() == "weights kept: epoch 3"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [3, 3]
    assert fig._suptitle.get_text() == "digits\nearly stopping after epoch 6"


def test_a_figure_without_values_gets_no_panel(monkeypatch):
    records = [{**r, "train_r2": 0.5, "val_r2": 0.4, "train_rmse": None, "val_rmse": None}
               for r in _records(3, validation=True)]
    for r in records:
        del r["train_accuracy"], r["val_accuracy"]
    fig = _drawn_figure(monkeypatch, lambda: plot_learning_curves(records, "unused.png"))
    assert [ax.get_title() for ax in fig.axes] == ["loss", "R²"]


# -- fixed margins ----------------------------------------------------------------------

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _every_plot(rng):
    """Each kind of figure, with the long names, large numbers and long titles that need the widest margins."""
    from handgrad.report.metrics import multilabel_scores
    from handgrad.report.plots import plot_label_scores, plot_predicted_vs_true

    y = rng.normal(0, 1, (60, 2)) * [1, 1e5]
    Y = rng.integers(0, 2, (60, 4))
    return {
        "learning curves, L2 term": lambda: plot_learning_curves(
            [{**r, "l2_term": 0.5} for r in _records(12)], "unused.png", title="iris, 4-16-3 relu", kept_epoch=7,
            note="early stopping after epoch 12: no better val_loss for 5 epochs; weights of epoch 7 kept"),
        "learning curves, regression": lambda: plot_learning_curves(
            _task_records(8, {"r2": lambda e: 1 - 50 / e ** 2, "rmse": lambda e: 250000 / e}), "unused.png"),
        "confusion matrix": lambda: plot_confusion_matrix(
            np.eye(10, dtype=int) * 50 + 1, FASHION, "unused.png", title="fashion-mnist, 784-512-256-10 relu"),
        "first-layer weights": lambda: plot_first_layer_weights(
            rng.normal(size=(64, 3)), (8, 8), "unused.png", title="digits, 64-3-10 relu"),
        "misclassified": lambda: plot_misclassified(
            rng.integers(0, 256, (2, 64)), ["3", "5"], ["8", "3"], (8, 8), "unused.png",
            title="digits, 64-128-10 relu, test split"),
        "predicted against true": lambda: plot_predicted_vs_true(
            y, 1.1 * y, ["x", "house value in dollars"], "unused.png", title="houses, 8-100-2 relu"),
        "label scores": lambda: plot_label_scores(
            multilabel_scores(Y, Y), ["electronic dance", "rock", "classical music", "soundtrack"], "unused.png"),
    }


@pytest.mark.parametrize("kind", list(_every_plot(np.random.default_rng(0))))
def test_figures_have_fixed_margins_that_keep_every_text_inside(monkeypatch, rng, kind):
    # Constrained layout measured every artist twice before each save, as long as the drawing itself took: the
    # figures set their margins from the texts' sizes instead, so nothing may stick out of the figure.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _drawn_figure(monkeypatch, _every_plot(rng)[kind])
    assert fig.get_layout_engine() is None
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    drawn = fig.get_tightbbox(renderer)               # in inches: the texts, ticks and axes drawn
    width, height = fig.get_size_inches()
    assert drawn.x0 >= 0 and drawn.y0 >= 0 and drawn.x1 <= width and drawn.y1 <= height, (drawn, width, height)
