"""One runner per contender: each trains (or predicts) a job and reports times and accuracy.

A runner returns a dict with ``seconds`` (per epoch for training jobs, per
call for inference; the median over the job's repeats, which train with
seeds 0, 1, 2, …), ``test_accuracy`` (the mean over the repeats)
and, for job 2, ``time_to_target`` and the per-epoch curve.  On the jobs
with repeats, a training runner's first fit is its process's first (cold:
library imported inside the clock, nothing loaded); it reports when that
fit ended (``first_fit_done``) and then times the repeats warm.  The raced
job warms up on a small slice instead.  Evaluation is never timed.
"""

import time
import warnings

import numpy as np

from jobs import batch_sizes

N_CLASSES = 10


# -- the matmul floor ----------------------------------------------------------


def floor(job, data, threads):
    """Seconds for the job's matrix products alone, with and without the first layer's ``G Wᵀ``.

    Per minibatch and layer: ``X W`` forward, ``Xᵀ G`` and ``G Wᵀ`` backward,
    on arrays of the job's shapes and dtype, in preallocated outputs.
    """
    X_train, _, X_test, _ = data
    widths = [X_train.shape[1], *job.hidden, N_CLASSES]
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal((a, b)) * 0.05).astype(X_train.dtype) for a, b in zip(widths, widths[1:])]
    if job.name == "inference":
        sizes, backward = [X_test.shape[0]], False
    else:
        sizes, backward = batch_sizes(job, X_train.shape[0]), True
    # Fixed inputs and separate outputs: no product feeds another, so the
    # values never drift into denormals or overflow over the repeats.
    acts = {n: [(rng.standard_normal((n, w)) * 0.1).astype(X_train.dtype) for w in widths] for n in set(sizes)}
    outs = {n: [np.empty((n, w), dtype=X_train.dtype) for w in widths] for n in set(sizes)}
    grads = [np.empty_like(W) for W in weights]

    def epoch(first_input_grad):
        for n in sizes:
            A, out = acts[n], outs[n]
            for i, W in enumerate(weights):
                np.matmul(A[i], W, out=out[i + 1])
            if not backward:
                continue
            for i in range(len(weights) - 1, -1, -1):
                np.matmul(A[i].T, A[i + 1], out=grads[i])
                if i > 0 or first_input_grad:
                    np.matmul(A[i + 1], weights[i].T, out=out[i])

    epoch(True)
    repeats = max(3, job.repeats)
    full = _median_time(lambda: epoch(True), repeats)
    result = {"seconds": full, "test_accuracy": None}
    if backward:
        products = _median_time(lambda: epoch(False), repeats)
        update = len(sizes) * _update_traffic_seconds(job, sum(W.size + W.shape[1] for W in weights),
                                                      X_train.dtype)
        result.update(seconds_without_first_input_grad=products, update_traffic_seconds=update,
                      physical_floor=products + update)
    else:
        result["physical_floor"] = full
    return result


# Arrays of the parameters' size that one optimizer step must read or write
# at least once: the gradient and the parameters (read, write), plus each
# state array (read, write).
UPDATE_TOUCHES = {"adam": 7, "sgd-momentum": 5, "sgd": 3}


def _update_traffic_seconds(job, n_parameters, dtype):
    """Seconds for one optimizer step's unavoidable memory traffic over ``n_parameters``.

    Measured, not computed from a nominal bandwidth: ``np.add(a, b, out=c)``
    streams three arrays of the parameters' size (two reads, one write), as
    an update's arrays are streamed; a third of its time is one touch.
    """
    kind = job.optimizer if job.optimizer == "adam" else ("sgd-momentum" if job.momentum else "sgd")
    a, b, c = (np.ones(n_parameters, dtype=dtype) for _ in range(3))
    calls = 200
    per_call = _median_time(lambda: [np.add(a, b, out=c) for _ in range(calls)], 7) / calls
    return UPDATE_TOUCHES[kind] * per_call / 3


def _summary(seconds_per_epoch, accuracies):
    """Median time; test accuracy as the mean over the repeats, which use seeds 0, 1, 2, …"""
    return {"seconds": float(np.median(seconds_per_epoch)), "test_accuracy": float(np.mean(accuracies)),
            "test_accuracies": accuracies}


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# -- handgrad -----------------------------------------------------------------------


def handgrad(job, data, threads):
    import handgrad as hg

    X_train, y_train, X_test, y_test = data
    if job.name == "inference":
        model = hg.mlp(X_train.shape[1], list(job.hidden), N_CLASSES, seed=0)
        model.predict_proba(X_test)
        seconds = _median_time(lambda: model.predict_proba(X_test), job.repeats)
        return {"seconds": seconds, "test_accuracy": None}

    def train(X, y, epochs, clock=None, seed=0):
        model = hg.mlp(X.shape[1], list(job.hidden), N_CLASSES, seed=seed)
        schedule = hg.schedules.Cosine(job.lr, job.epochs) if job.schedule == "cosine" else None
        callbacks = [clock] if clock is not None else []
        start = time.perf_counter()
        if job.optimizer == "adam":
            optimizer = hg.Adam(job.lr)
        else:
            optimizer = hg.SGD(job.lr, momentum=job.momentum, nesterov=job.nesterov)
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=optimizer, epochs=epochs,
               batch_size=job.batch_size, l2=job.l2, lr_schedule=schedule, seed=seed, callbacks=callbacks)
        return model, time.perf_counter() - start, optimizer

    if job.target_accuracy is not None:
        model, _, _ = train(X_train[:1024], y_train[:1024], 1)          # warm-up
        kernels = _kernels_loaded(hg, model)
        clock = _clock_callback(hg.Callback)(X_test, y_test)
        train(X_train, y_train, job.epochs, clock)
        return {**_curve_summary(clock.seconds, clock.accuracies, job), "kernels": kernels}
    model, _, optimizer = train(X_train, y_train, job.epochs)        # cold: the process's first fit
    first_done = time.perf_counter()
    # Asked again, prepare repeats the choice the fit made and loads nothing.
    cold_kernels = "compiled" if optimizer.prepare(model.flat_parameters) else "numpy"
    kernels = _kernels_loaded(hg, model)
    times, accuracies = [], []
    for seed in range(job.repeats):
        model, seconds, _ = train(X_train, y_train, job.epochs, seed=seed)
        times.append(seconds / job.epochs)
        accuracies.append(float(np.mean(model.predict(X_test) == y_test)))
    return {**_summary(times, accuracies), "kernels": kernels, "cold_kernels": cold_kernels,
            "first_fit_done": first_done}


def _kernels_loaded(hg, model):
    """The update a fit runs here: ``"compiled"`` where handgrad was built with its kernels, else ``"numpy"``."""
    return "compiled" if hg.Adam().prepare(model.flat_parameters) else "numpy"


def _clock_callback(base):
    """A handgrad callback class that tests each epoch's model and keeps the testing out of the clock."""

    class Clock(base):
        def __init__(self, X_test, y_test):
            self.X_test, self.y_test = X_test, y_test
            self.seconds, self.accuracies = [], []
            self.last = time.perf_counter()

        def on_epoch_end(self, ctx, record):
            self.seconds.append(time.perf_counter() - self.last)
            self.accuracies.append(float(np.mean(ctx.model.predict(self.X_test) == self.y_test)))
            self.last = time.perf_counter()

    return Clock


def _curve_summary(seconds, accuracies, job):
    elapsed = np.cumsum(seconds)
    reached = [i for i, a in enumerate(accuracies) if a >= job.target_accuracy]
    return {
        "seconds": float(np.median(seconds)),
        "test_accuracy": accuracies[-1],
        "time_to_target": float(elapsed[reached[0]]) if reached else None,
        "epoch_to_target": reached[0] + 1 if reached else None,
        "total_seconds": float(elapsed[-1]),
        "curve": [{"epoch": i + 1, "seconds": float(t), "test_accuracy": a}
                  for i, (t, a) in enumerate(zip(elapsed, accuracies))],
    }


# -- scikit-learn --------------------------------------------------------------------


def sklearn(job, data, threads):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X_train, y_train, X_test, y_test = data

    def make(epochs, seed=0):
        # alpha is scikit-learn's L2 strength (it divides the penalty by the batch size).
        return MLPClassifier(hidden_layer_sizes=job.hidden, activation="relu", solver="adam", alpha=job.l2,
                             batch_size=job.batch_size, learning_rate_init=job.lr, max_iter=epochs, shuffle=True,
                             tol=0.0, n_iter_no_change=epochs + 1, random_state=seed)

    warnings.simplefilter("ignore", ConvergenceWarning)
    if job.name == "inference":
        clf = make(1).fit(X_train[:2000], y_train[:2000])
        clf.predict_proba(X_test)
        return {"seconds": _median_time(lambda: clf.predict_proba(X_test), job.repeats), "test_accuracy": None}
    make(job.epochs).fit(X_train, y_train)                           # cold: the process's first fit
    first_done = time.perf_counter()
    times, accuracies = [], []
    for seed in range(job.repeats):
        clf = make(job.epochs, seed)
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        times.append((time.perf_counter() - start) / clf.n_iter_)
        accuracies.append(float(clf.score(X_test, y_test)))
    return {**_summary(times, accuracies), "first_fit_done": first_done}


# -- PyTorch -------------------------------------------------------------------------


def torch_cpu(job, data, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    X_train, y_train, X_test, y_test = (torch.from_numpy(a) for a in data)

    def build(seed=0):
        """The handgrad network: He-normal weights before ReLU, Glorot-uniform at the output, zero biases."""
        torch.manual_seed(seed)
        widths = [X_train.shape[1], *job.hidden, N_CLASSES]
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            linear = nn.Linear(a, b)
            if i < len(widths) - 2:
                nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
                layers += [linear, nn.ReLU()]
            else:
                nn.init.xavier_uniform_(linear.weight)
                layers.append(linear)
            nn.init.zeros_(linear.bias)
        return nn.Sequential(*layers)

    def accuracy(model):
        with torch.no_grad():
            return float((model(X_test).argmax(1) == y_test).float().mean())

    if job.name == "inference":
        model = build()

        def predict():
            with torch.no_grad():
                return torch.softmax(model(X_test), dim=1)

        predict()
        return {"seconds": _median_time(predict, job.repeats), "test_accuracy": None}

    def train(X, y, epochs, on_epoch_end=None, seed=0):
        model = build(seed)
        decayed = [p for name, p in model.named_parameters() if name.endswith("weight")]
        others = [p for name, p in model.named_parameters() if not name.endswith("weight")]
        # handgrad's L2 adds λW to the weight gradients only, as weight_decay does here.
        groups = [{"params": decayed, "weight_decay": job.l2}, {"params": others, "weight_decay": 0.0}]
        if job.optimizer == "adam":
            optimizer = torch.optim.Adam(groups, lr=job.lr)
        else:
            optimizer = torch.optim.SGD(groups, lr=job.lr, momentum=job.momentum, nesterov=job.nesterov)
        criterion = nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(seed)
        n = X.shape[0]
        n_batches = -(-n // job.batch_size)
        start = time.perf_counter()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator)
            running = 0.0
            for b in range(n_batches):
                idx = order[b * job.batch_size:(b + 1) * job.batch_size]
                for group in optimizer.param_groups:
                    group["lr"] = job.lr_at(epoch + b / n_batches)
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(X[idx]), y[idx])
                loss.backward()
                optimizer.step()
                running += loss.item()
            if on_epoch_end is not None:
                on_epoch_end(model)
        return model, time.perf_counter() - start

    if job.target_accuracy is not None:
        train(X_train[:1024], y_train[:1024], 1)                    # warm-up
        seconds, accuracies = [], []
        last = [time.perf_counter()]

        def on_epoch_end(model):
            seconds.append(time.perf_counter() - last[0])
            accuracies.append(accuracy(model))
            last[0] = time.perf_counter()

        train(X_train, y_train, job.epochs, on_epoch_end)
        return _curve_summary(seconds, accuracies, job)
    train(X_train, y_train, job.epochs)                              # cold: the process's first fit
    first_done = time.perf_counter()
    times, accuracies = [], []
    for seed in range(job.repeats):
        model, seconds = train(X_train, y_train, job.epochs, seed=seed)
        times.append(seconds / job.epochs)
        accuracies.append(accuracy(model))
    return {**_summary(times, accuracies), "first_fit_done": first_done}


RUNNERS = {
    "floor": (floor, "float32"),
    "handgrad": (handgrad, "float32"),
    "handgrad-numpy": (handgrad, "float32"),        # run with HANDGRAD_NO_COMPILED=1 (bench.py sets it)
    "sklearn-float64": (sklearn, "float64"),
    "sklearn-float32": (sklearn, "float32"),
    "torch": (torch_cpu, "float32"),
}
