"""Regression and multilabel training: the figures fit and evaluate report, against scikit-learn's metrics."""

import io

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, hamming_loss, mean_squared_error, r2_score

import handgrad as hg
from handgrad.tasks import of as task_of
from handgrad.training.loop import evaluate


def regression_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 3))
    Y = np.stack([np.sin(X[:, 0]) + 0.5 * X[:, 1], X[:, 1] * X[:, 2], 3 + 0.5 * X[:, 2] ** 2], axis=1)
    return X, Y


def multilabel_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    Y = (X @ rng.standard_normal((4, 3)) + 0.3 > 0).astype(float)
    return X, Y


def regression_model(n_out=3, dtype=np.float32):
    return hg.Sequential(hg.Dense(3, 32, dtype=dtype), hg.GELU(), hg.Dense(32, n_out, dtype=dtype), seed=0)


def test_regression_history_reports_rmse_and_r2_and_learns():
    X, Y = regression_data()
    history = hg.fit(regression_model(), hg.SquaredError(), X, Y, optimizer=hg.Adam(1e-2), epochs=40,
                     batch_size=32, validation_fraction=0.2, seed=0)
    assert set(history.records[0]) == {"epoch", "train_loss", "train_rmse", "train_r2", "lr", "seconds", "val_loss",
                                       "val_rmse", "val_r2"}
    assert history["val_r2"][-1] > 0.9 > history["val_r2"][0]
    assert history["val_rmse"][-1] < history["val_rmse"][0]


def test_multilabel_history_reports_label_and_subset_accuracy_and_learns():
    X, Y = multilabel_data()
    model = hg.Sequential(hg.Dense(4, 16), hg.ELU(), hg.Dense(16, 3), seed=0)
    history = hg.fit(model, hg.SigmoidBinaryCrossEntropy(), X, Y, optimizer=hg.Adam(1e-2), epochs=30, batch_size=32,
                     validation_fraction=0.2, seed=0)
    assert set(history.records[0]) == {"epoch", "train_loss", "train_label_accuracy", "train_subset_accuracy", "lr",
                                       "seconds", "val_loss", "val_label_accuracy", "val_subset_accuracy"}
    assert history["val_label_accuracy"][-1] > 0.9 and history["val_subset_accuracy"][-1] > 0.8
    assert all(s <= a for s, a in zip(history["val_subset_accuracy"], history["val_label_accuracy"]))


def test_evaluate_matches_scikit_learn_for_regression():
    X, Y = regression_data(seed=1)
    model = regression_model(dtype=np.float64)
    hg.fit(model, hg.SquaredError(), X, Y, optimizer=hg.Adam(1e-2), epochs=5, seed=0)
    figures = evaluate(model, hg.SquaredError(), X, Y, batch_size=64)       # batches merged exactly
    predicted = model.predict(X, loss=hg.SquaredError())
    assert figures["val_r2"] == pytest.approx(r2_score(Y, predicted), rel=1e-10)
    assert figures["val_rmse"] == pytest.approx(np.sqrt(mean_squared_error(Y, predicted)), rel=1e-10)
    assert figures["val_loss"] == pytest.approx(0.5 * ((predicted - Y) ** 2).sum(axis=1).mean(), rel=1e-10)


def test_evaluate_matches_scikit_learn_for_multilabel():
    X, Y = multilabel_data(seed=1)
    model = hg.Sequential(hg.Dense(4, 8, dtype=np.float64), hg.Tanh(), hg.Dense(8, 3, dtype=np.float64), seed=0)
    hg.fit(model, hg.SigmoidBinaryCrossEntropy(), X, Y, epochs=2, seed=0)
    figures = evaluate(model, hg.SigmoidBinaryCrossEntropy(), X, Y, batch_size=64)
    predicted = model.predict(X, loss=hg.SigmoidBinaryCrossEntropy())
    assert figures["val_subset_accuracy"] == pytest.approx(accuracy_score(Y, predicted), rel=1e-12)
    assert figures["val_label_accuracy"] == pytest.approx(1 - hamming_loss(Y, predicted), rel=1e-12)


def test_training_figures_of_an_epoch_without_updates_are_those_of_the_whole_set():
    X, Y = regression_data()
    model = regression_model(dtype=np.float64)
    history = hg.fit(model, hg.SquaredError(), X, Y, optimizer=hg.SGD(1e-300), epochs=1, batch_size=64, seed=0)
    expected = evaluate(model, hg.SquaredError(), X, Y)
    assert history["train_loss"][0] == pytest.approx(expected["val_loss"], rel=1e-12)
    assert history["train_r2"][0] == pytest.approx(expected["val_r2"], rel=1e-10)
    assert history["train_rmse"][0] == pytest.approx(expected["val_rmse"], rel=1e-12)


def test_r2_of_a_constant_target_follows_scikit_learn():
    scores = task_of(hg.SquaredError()).tally(hg.SquaredError())
    Y = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    scores.add(np.array([[1.0, 2.5], [1.0, 4.0], [1.0, 5.0]]), Y)
    exact = scores.figures("val")["val_r2"]
    scores = task_of(hg.SquaredError()).tally(hg.SquaredError())
    scores.add(np.array([[1.5, 2.5], [1.0, 4.0], [1.0, 5.0]]), Y)
    inexact = scores.figures("val")["val_r2"]
    assert exact == pytest.approx(r2_score(Y, [[1.0, 2.5], [1.0, 4.0], [1.0, 5.0]]))       # constant column: 1
    assert inexact == pytest.approx(r2_score(Y, [[1.5, 2.5], [1.0, 4.0], [1.0, 5.0]]))     # constant column: 0


def test_one_output_regression_takes_a_target_vector():
    X, Y = regression_data()
    model = regression_model(n_out=1)
    history = hg.fit(model, hg.SquaredError(), X, Y[:, 0], optimizer=hg.Adam(1e-2), epochs=20, batch_size=32, seed=0)
    assert history["train_r2"][-1] > 0.9
    assert model.predict(X, loss=hg.SquaredError()).shape == (300, 1)


def test_the_progress_line_shows_the_figures_of_the_task():
    X, Y = regression_data(n=64)
    stream = io.StringIO()
    hg.fit(regression_model(), hg.SquaredError(), X, Y, epochs=1, validation_fraction=0.25,
           callbacks=[hg.EpochLogger(stream=stream)], seed=0)
    assert "  rmse " in stream.getvalue() and "  r2 " in stream.getvalue() and "val_r2 " in stream.getvalue()
    X, Y = multilabel_data(n=64)
    stream = io.StringIO()
    hg.fit(hg.Sequential(hg.Dense(4, 3), seed=0), hg.SigmoidBinaryCrossEntropy(), X, Y, epochs=1,
           callbacks=[hg.EpochLogger(stream=stream)], seed=0)
    assert "  label_acc " in stream.getvalue() and "  subset_acc " in stream.getvalue()
    assert " acc " not in stream.getvalue().replace("label_acc ", "").replace("subset_acc ", "")


def test_early_stopping_can_watch_a_regression_figure():
    X, Y = regression_data()
    stopper = hg.EarlyStopping(monitor="val_r2", mode="max", patience=2)
    history = hg.fit(regression_model(), hg.SquaredError(), X, Y, optimizer=hg.Adam(1e-2), epochs=200,
                     batch_size=32, validation_fraction=0.2, early_stopping=stopper, seed=0)
    assert len(history) < 200 and stopper.best == max(history["val_r2"])


def test_a_regression_model_and_its_history_survive_save_and_load(tmp_path):
    from handgrad.io.modelfile import load_model

    X, Y = regression_data()
    model = regression_model()
    history = hg.fit(model, hg.SquaredError("sum"), X, Y, epochs=2, validation_fraction=0.2, seed=0)
    hg.save(model, tmp_path / "r.npz", loss=hg.SquaredError("sum"), history=history.records)
    loaded = load_model(tmp_path / "r.npz")
    assert isinstance(loaded.loss, hg.SquaredError) and loaded.loss.reduction == "sum"
    assert [r["val_r2"] for r in loaded.history] == history["val_r2"]
    np.testing.assert_array_equal(loaded.model.predict(X, loss=loaded.loss), model.predict(X, loss=hg.SquaredError()))


def test_poisson_history_figures_score_the_predicted_means_not_the_log_means():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    mu = np.exp(0.5 * X[:, :1] + 1.0)
    y = rng.poisson(mu).astype(float).ravel()
    model = hg.mlp(3, [8], 1, dtype=np.float64, seed=0)
    history = hg.fit(model, hg.PoissonDeviance(), X, y, optimizer=hg.Adam(1e-2), epochs=30, batch_size=32, seed=0,
                     validation_fraction=0.25)
    loss = hg.PoissonDeviance()
    result = hg.evaluate(model, loss, X, y)
    predicted = loss.predict(model.forward(X)).ravel()
    rmse = np.sqrt(np.mean((predicted - y) ** 2))
    assert result["val_rmse"] == pytest.approx(rmse, rel=1e-9)
    assert history["val_r2"][-1] > 0.2            # the counts' means are learnable; log μ against y would score < 0


# -- the Task objects ---------------------------------------------------------------

def test_each_loss_points_at_a_task_that_compares_equal_to_its_name():
    from handgrad import tasks

    assert hg.SoftmaxCrossEntropy.task is tasks.CLASSIFICATION and hg.SquaredError.task is tasks.REGRESSION
    assert hg.SigmoidBinaryCrossEntropy.task == "multilabel" and hg.PoissonDeviance.task != "classification"
    assert {tasks.REGRESSION: 1}["regression"] == 1                     # hashes as its name, for tables keyed by name
    assert tasks.get("multilabel") is tasks.MULTILABEL and tasks.get(tasks.REGRESSION) is tasks.REGRESSION
    with pytest.raises(hg.HandgradError, match="unknown task 'ranking'; a task is one of classification"):
        tasks.get("ranking")


def test_a_loss_may_name_its_task_as_text():
    class Halved(hg.SquaredError):
        task = "regression"

    assert Halved.task is hg.SquaredError.task


def test_the_multilabel_tally_reads_predictions_through_the_loss():
    class Cautious(hg.SigmoidBinaryCrossEntropy):
        """A label is present only when σ(z) > 0.9."""

        def predict(self, Z):
            return (Z > np.log(9)).astype(np.intp)

    Z = np.array([[1.0, 3.0], [-1.0, 0.5]])
    Y = np.array([[1.0, 1.0], [0.0, 0.0]])
    plain, cautious = hg.SigmoidBinaryCrossEntropy(), Cautious()
    for loss, right in ((plain, 3), (cautious, 3)):
        scores = loss.task.tally(loss)
        scores.add(Z, Y)
        assert scores.figures("val")["val_label_accuracy"] == right / 4
    scores = cautious.task.tally(cautious)
    scores.add(Z, Y)
    assert scores.figures("val")["val_subset_accuracy"] == 0.5       # row 0 misses its first label, row 1 is right


def test_a_new_task_is_one_class_and_fit_reports_its_figures(tmp_path):
    """A fourth task (here, ordered classes scored by mean absolute rank error) needs its Task class and a loss."""
    from handgrad import tasks
    from handgrad.report.plots import plot_learning_curves

    class Ordinal(tasks.Classification):
        name = "ordinal-example"
        figures = (*tasks.Classification.figures, tasks.Figure("rank_error", "mean rank error", "rank_err"))

        def tally(self, loss):
            return _RankTally()

    class _RankTally:
        def __init__(self):
            self.errors, self.n, self.right = 0.0, 0, 0

        def add(self, Z, y):
            self.errors += float(np.abs(Z.argmax(axis=1) - y).sum())
            self.right += int(np.count_nonzero(Z.argmax(axis=1) == y))
            self.n += len(y)

        def figures(self, prefix):
            return {f"{prefix}_accuracy": self.right / self.n, f"{prefix}_rank_error": self.errors / self.n}

    class OrdinalCrossEntropy(hg.SoftmaxCrossEntropy):
        task = "ordinal-example"

    try:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((120, 3))
        y = np.digitize(X[:, 0], [-0.5, 0.5])
        stream = io.StringIO()
        history = hg.fit(hg.Sequential(hg.Dense(3, 3), seed=0), OrdinalCrossEntropy(), X, y, epochs=3,
                         validation_fraction=0.25, callbacks=[hg.EpochLogger(stream=stream)], seed=0)
        assert {"train_rank_error", "val_rank_error"} <= set(history.records[-1])
        assert " rank_err " in stream.getvalue() and " val_rank_err " in stream.getvalue()
        assert hg.losses(task="ordinal-example") == {"ordinal-cross-entropy": OrdinalCrossEntropy}
        assert Ordinal().figures_text(history.records[-1], "train").startswith("accuracy ")
        plot_learning_curves(history.records, tmp_path / "curves.png")
        from matplotlib.image import imread

        assert imread(tmp_path / "curves.png").shape[1] == 1500         # three panels of 5 inches: loss, both figures
    finally:
        tasks.TASKS._by_type.pop("Ordinal", None)                # leave the registry as the other tests expect
        hg.registry.LOSSES._by_type.pop("OrdinalCrossEntropy", None)
