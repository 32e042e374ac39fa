"""handgrad on a GPU against PyTorch's own nn with autograd on the same GPU, and the GPU's matmul floor.

    python benchmarks/gpu.py [--device cuda] [--jobs best,2] [--quick] [--record gpu] [--data-dir DIR]

Two jobs, on all 60,000 MNIST training images, scored on the 10,000 test images after every epoch:

* ``best``: the network and recipe of ``handgrad train --dataset mnist --preset best``, read from the
  preset (784-1024-512-10, every image shifted by up to 1 pixel each epoch, L2 5e-5, SGD with momentum
  0.9, lr 0.1 on a cosine, batch 128, 15 epochs); time to 99.0% test accuracy.  (The preset holds 5% out
  for its validation curve; here every image trains, for every contender.)
* ``2``: job 2 of ``bench.py`` (784-512-256-10, SGD momentum 0.9, lr 0.15 cosine, batch 128, L2 5e-5,
  12 epochs); time to 98.5% and to 99.0%.

Contenders: ``handgrad-torch`` (handgrad's hand-derived code on PyTorch tensors, through array-api-compat),
``handgrad-cupy`` (the same on CuPy arrays, when CuPy is installed), and ``torch`` (PyTorch's nn and
autograd, the same network, initialisation and recipe; its shifts are drawn on the GPU, handgrad's on the
host, as ``hg.fit`` draws them).  The floor is each job's matrix products alone (forward ``X W``, backward
``Xᵀ G`` and ``G Wᵀ`` without the first layer's), timed on the same device in the same run.

Each contender warms up on a slice first (cuBLAS handles, kernel caches); an epoch's clock stops after the
device has finished its work, and the test accuracy is measured off the clock.  Results are printed and
written to ``results/run-<UTC time>-gpu.{json,md}`` (git ignores those), or with ``--record NAME`` to
``results/NAME.{json,md}``; the table names the device.  ``--device cpu`` runs the same code on PyTorch's
CPU, and ``--quick`` on a slice of the data for two epochs: a dry run of the script on any machine.
"""

import argparse
import datetime
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from bench import record_name  # noqa: E402


@dataclass(frozen=True)
class GpuJob:
    name: str
    title: str
    hidden: tuple
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    l2: float = 0.0
    input_dropout: float = 0.0
    dropout: float = 0.0
    shift: int = 0
    targets: tuple = field(default=(0.99,))

    def lr_at(self, t):
        """The cosine from ``lr`` to 0 over the run, at ``t`` epochs (handgrad's ``Cosine(lr, epochs)``)."""
        return 0.5 * self.lr * (1 + math.cos(math.pi * min(1.0, t / self.epochs)))


def jobs():
    """The two jobs, read from the preset table and from bench.py's jobs, so that neither is copied here."""
    from handgrad.cli.presets import _COLUMNS, BEST
    from jobs import JOBS

    best, second = BEST["mnist"], JOBS["2"]
    return {
        "best": GpuJob("best", f"MNIST --preset best: 784-{'-'.join(map(str, best['hidden']))}-10, "
                       f"{_COLUMNS['regularisation'](best)}, L2 {best['l2']:g}, SGD momentum {best['momentum']:g}, "
                       f"lr {best['lr']:g} cosine, batch {best['batch_size']}, {best['epochs']} epochs: time to 99.0%",
                       hidden=tuple(best["hidden"]), epochs=best["epochs"], batch_size=best["batch_size"],
                       lr=best["lr"], momentum=best["momentum"], l2=best["l2"], input_dropout=best["input_dropout"],
                       dropout=best["dropout"], shift=best["shift"], targets=(0.99,)),
        "2": GpuJob("2", "bench.py job 2: 784-512-256-10, SGD momentum 0.9, lr 0.15 cosine, batch 128, L2 5e-5, "
                    "12 epochs: time to 98.5% and 99.0%", hidden=second.hidden, epochs=second.epochs,
                    batch_size=second.batch_size, lr=second.lr, momentum=second.momentum, l2=second.l2,
                    targets=(0.985, 0.99)),
    }


def quick(job):
    return GpuJob(**{**job.__dict__, "epochs": 2})


# -- the device --------------------------------------------------------------------------

class Device:
    """A PyTorch device (``cuda``, ``cuda:N``, ``cpu``): its name, its synchronisation, its arrays."""

    def __init__(self, name):
        import torch

        if name.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit(f"gpu.py: --device {name}: PyTorch sees no CUDA GPU here; run it on a machine with "
                             "one, or pass --device cpu --quick for a dry run")
        self.torch, self.name = torch, name
        self.device = torch.device(name)
        self.is_cuda = self.device.type == "cuda"

    def describe(self):
        torch = self.torch
        if self.is_cuda:
            props = torch.cuda.get_device_properties(self.device)
            return (f"{torch.cuda.get_device_name(self.device)} ({props.total_memory / 2**30:.0f} GiB), "
                    f"CUDA {torch.version.cuda}, PyTorch {torch.__version__}")
        return f"{platform.processor() or platform.machine()} CPU (a dry run), PyTorch {torch.__version__}"

    def synchronize(self):
        if self.is_cuda:
            self.torch.cuda.synchronize(self.device)
            cupy = sys.modules.get("cupy")
            if cupy is not None:
                cupy.cuda.Device(self.device.index or 0).synchronize()

    def tensor(self, array):
        return self.torch.asarray(array, device=self.device)


def load_data(data_dir, limit=None):
    """``(X_train, y_train, X_test, y_test)``: MNIST pixels in [0, 1] as float32, labels int64."""
    from idx import DATA, load_mnist

    X_train, y_train, X_test, y_test = load_mnist((Path(data_dir) if data_dir else DATA) / "mnist")
    if limit:
        return X_train[:limit], y_train[:limit], X_test[:limit // 4], y_test[:limit // 4]
    return X_train, y_train, X_test, y_test


# -- the floor -----------------------------------------------------------------------------

def floor(job, data, device):
    """Seconds per epoch of the job's matrix products alone, on the device (median of three epochs)."""
    torch = device.torch
    X_train = data[0]
    widths = [X_train.shape[1], *job.hidden, 10]
    full, rest = divmod(X_train.shape[0], job.batch_size)
    sizes = [job.batch_size] * full + ([rest] if rest else [])
    generator = torch.Generator(device=device.device).manual_seed(0)

    def normal(*shape):
        return torch.randn(*shape, generator=generator, device=device.device) * 0.05

    weights = [normal(a, b) for a, b in zip(widths, widths[1:])]
    acts = {n: [normal(n, w) for w in widths] for n in set(sizes)}
    outs = {n: [torch.empty(n, w, device=device.device) for w in widths] for n in set(sizes)}
    grads = [torch.empty_like(W) for W in weights]

    def epoch():
        for n in sizes:
            A, out = acts[n], outs[n]
            for i, W in enumerate(weights):
                torch.matmul(A[i], W, out=out[i + 1])
            for i in range(len(weights) - 1, -1, -1):
                torch.matmul(A[i].T, A[i + 1], out=grads[i])
                if i > 0:
                    torch.matmul(A[i + 1], weights[i].T, out=out[i])
        device.synchronize()

    epoch()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)
    return {"seconds": float(np.median(times))}


# -- the clock: per-epoch seconds on the device, test accuracy off the clock ------------------

class Clock:
    def __init__(self, device, accuracy):
        self.device, self.accuracy = device, accuracy
        self.seconds, self.accuracies = [], []
        self.last = None

    def start(self):
        self.device.synchronize()
        self.last = time.perf_counter()

    def lap(self, model):
        self.device.synchronize()
        self.seconds.append(time.perf_counter() - self.last)
        self.accuracies.append(self.accuracy(model))
        self.start()

    def summary(self, job):
        elapsed = np.cumsum(self.seconds)
        result = {"seconds": float(np.median(self.seconds)), "test_accuracy": self.accuracies[-1],
                  "total_seconds": float(elapsed[-1]),
                  "curve": [{"epoch": i + 1, "seconds": float(t), "test_accuracy": a}
                            for i, (t, a) in enumerate(zip(elapsed, self.accuracies))]}
        for target in job.targets:
            reached = [i for i, a in enumerate(self.accuracies) if a >= target]
            result[f"time_to_{target:.3f}"] = float(elapsed[reached[0]]) if reached else None
        return result


# -- handgrad ----------------------------------------------------------------------------------

def handgrad(job, data, device, namespace):
    """handgrad's hand-derived training on ``namespace``'s arrays ("torch" or "cupy") on the device."""
    import handgrad as hg
    from handgrad.arrays import ops_for
    from handgrad.data.augment import shift_images

    if namespace == "cupy":
        import cupy

        target = (cupy, cupy.cuda.Device(device.device.index or 0))
    else:
        target = (device.torch, device.device)
    X_train, y_train, X_test, y_test = data
    ops = ops_for(*target)
    X_test_device, y_test_device = ops.asarray(X_test), ops.asarray(y_test)

    def build():
        layers = [hg.Dropout(job.input_dropout)] if job.input_dropout else []
        widths = [X_train.shape[1], *job.hidden]
        for a, b in zip(widths, widths[1:]):
            layers += [hg.Dense(a, b), hg.ReLU()] + ([hg.Dropout(job.dropout)] if job.dropout else [])
        return hg.Sequential(*layers, hg.Dense(widths[-1], 10), seed=0).to(*target)

    def accuracy(model):
        return float(ops.mean(ops.astype(model.predict(X_test_device) == y_test_device, np.float32)))

    class Lap(hg.Callback):
        def __init__(self, clock):
            self.clock = clock

        def on_epoch_end(self, ctx, record):
            self.clock.lap(ctx.model)

    def train(X, y, epochs, clock=None):
        model = build()
        callbacks = [] if clock is None else [Lap(clock)]
        augment = shift_images((28, 28), job.shift) if job.shift else None
        if clock is not None:
            clock.start()
        hg.fit(model, hg.SoftmaxCrossEntropy(), X, y, optimizer=hg.SGD(job.lr, momentum=job.momentum),
               epochs=epochs, batch_size=job.batch_size, l2=job.l2, lr_schedule=hg.schedules.Cosine(job.lr, job.epochs),
               seed=0, augment=augment, callbacks=callbacks)
        return model

    X_device, y_device = ops.asarray(X_train), ops.asarray(y_train)     # on the device once, as fit would copy them
    train(X_device[:1024, ...], y_device[:1024], 1)                     # warm-up
    clock = Clock(device, accuracy)
    train(X_device, y_device, job.epochs, clock)
    return clock.summary(job)


# -- PyTorch's own nn and autograd --------------------------------------------------------------

def torch_nn(job, data, device):
    """The same network and recipe in PyTorch's nn, trained by autograd; shifts drawn on the device."""
    torch = device.torch
    from torch import nn

    X_train, y_train, X_test, y_test = (device.tensor(a) for a in data)

    def build():
        """handgrad's initialisation: He-normal weights before ReLU, Glorot-uniform at the output, zero biases."""
        torch.manual_seed(0)
        widths = [X_train.shape[1], *job.hidden, 10]
        layers = [nn.Dropout(job.input_dropout)] if job.input_dropout else []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            linear = nn.Linear(a, b)
            nn.init.zeros_(linear.bias)
            if i < len(widths) - 2:
                nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
                layers += [linear, nn.ReLU()] + ([nn.Dropout(job.dropout)] if job.dropout else [])
            else:
                nn.init.xavier_uniform_(linear.weight)
                layers.append(linear)
        return nn.Sequential(*layers).to(device.device)

    def accuracy(model):
        model.eval()
        with torch.no_grad():
            result = float((model(X_test).argmax(1) == y_test).float().mean())
        model.train()
        return result

    def shifted(Xb, generator):
        """Each image moved by up to ``job.shift`` pixels each way, fill 0: one gather on the device."""
        s, n = job.shift, Xb.shape[0]
        padded = nn.functional.pad(Xb.view(n, 28, 28), (s, s, s, s))
        dy, dx = torch.randint(-s, s + 1, (2, n), generator=generator, device=device.device)
        base = torch.arange(28, device=device.device) + s
        rows, cols = base[None, :] - dy[:, None], base[None, :] - dx[:, None]
        picked = padded[torch.arange(n, device=device.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return picked.reshape(n, 28 * 28)

    def train(X, y, epochs, clock=None):
        model = build()
        decayed = [p for name, p in model.named_parameters() if name.endswith("weight")]
        others = [p for name, p in model.named_parameters() if not name.endswith("weight")]
        optimizer = torch.optim.SGD([{"params": decayed, "weight_decay": job.l2}, {"params": others}],
                                    lr=job.lr, momentum=job.momentum)
        criterion = nn.CrossEntropyLoss()
        generator = torch.Generator(device=device.device).manual_seed(0)
        n = X.shape[0]
        n_batches = -(-n // job.batch_size)
        if clock is not None:
            clock.start()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator, device=device.device)
            for b in range(n_batches):
                idx = order[b * job.batch_size:(b + 1) * job.batch_size]
                for group in optimizer.param_groups:
                    group["lr"] = job.lr_at(epoch + b / n_batches)
                Xb = X[idx]
                if job.shift:
                    Xb = shifted(Xb, generator)
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(Xb), y[idx])
                loss.backward()
                optimizer.step()
                loss.item()                     # one host read a batch, as handgrad's divergence check reads it
            if clock is not None:
                clock.lap(model)
        return model

    train(X_train[:1024], y_train[:1024], 1)                              # warm-up
    clock = Clock(device, accuracy)
    train(X_train, y_train, job.epochs, clock)
    return clock.summary(job)


# -- the run -----------------------------------------------------------------------------------

def contenders(device):
    names = ["floor", "handgrad-torch"]
    if device.is_cuda:
        try:
            import cupy  # noqa: F401 - only its presence is asked
        except ImportError:
            pass
        else:
            names.append("handgrad-cupy")
    return names + ["torch"]


def run_job(job, data, device):
    results = {}
    for name in contenders(device):
        print(f"  {name} …", file=sys.stderr, flush=True)
        try:
            if name == "floor":
                results[name] = floor(job, data, device)
            elif name == "torch":
                results[name] = torch_nn(job, data, device)
            else:
                results[name] = handgrad(job, data, device, name.split("-", 1)[1])
        except Exception as error:        # one contender's failure is a result too; the others still run
            if name in ("floor", "handgrad-torch"):
                raise                       # the table is stated against these two
            results[name] = {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
            print(f"  {name} failed: {results[name]['error']}", file=sys.stderr, flush=True)
    return {"title": job.title, "recipe": {k: v for k, v in job.__dict__.items() if k != "title"},
            "results": results}


def format_job(key, job, markdown=False):
    targets = job["recipe"]["targets"]
    floor_seconds = job["results"]["floor"]["seconds"]
    handgrad_seconds = job["results"]["handgrad-torch"]["seconds"]
    head = ["contender", "s/epoch", "× floor", "÷ handgrad-torch"] + [f"s to {t:.1%}" for t in targets] + \
           ["test acc"]
    body = []
    for name, r in job["results"].items():
        if name == "floor":
            body.append(["matmul floor", f"{r['seconds']:.3f}", "1.00", ""] + [""] * len(targets) + [""])
            continue
        if "error" in r:
            body.append([name, "failed", "", ""] + [""] * len(targets) + [r["error"][:80]])
            continue
        times = [r.get(f"time_to_{t:.3f}") for t in targets]
        body.append([name, f"{r['seconds']:.3f}", f"{r['seconds'] / floor_seconds:.2f}",
                     f"{r['seconds'] / handgrad_seconds:.2f}"]
                    + ["–" if t is None else f"{t:.1f}" for t in times] + [f"{r['test_accuracy']:.4f}"])
    if markdown:
        lines = [f"### Job {key}: {job['title']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body]) + "\n"
    widths = [max(len(str(c)) for c in column) for column in zip(head, *body)]
    return "\n".join([f"Job {key}: {job['title']}"] + ["  ".join(str(c).ljust(w) for c, w in zip(row, widths))
                                                         for row in [head, *body]]) + "\n"


def run_name(quick_run, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"run-{now:%Y%m%dT%H%M%SZ}-gpu" + ("-quick" if quick_run else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="a PyTorch device: cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--jobs", default="best,2", help="comma-separated: best, 2 (default both)")
    parser.add_argument("--quick", action="store_true", help="2 epochs on 2,048 training images: a dry run")
    parser.add_argument("--data-dir", default=None, help="the folder holding mnist/ (default ../shared/data)")
    parser.add_argument("--record", metavar="NAME", type=record_name, default=None,
                        help="write results/NAME.{json,md} (e.g. gpu)")
    parser.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    table = jobs()
    chosen = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = [j for j in chosen if j not in table]
    if unknown:
        parser.error(f"unknown job(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    device = Device(args.device)
    data = load_data(args.data_dir, limit=2048 if args.quick else None)
    report = {"device": device.describe(), "quick": args.quick,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "jobs": {}}
    print(f"{report['date']} · {report['device']}\n", flush=True)
    stem = args.record or run_name(args.quick)
    for key in chosen:
        job = quick(table[key]) if args.quick else table[key]
        report["jobs"][key] = run_job(job, data, device)
        print(format_job(key, report["jobs"][key]), flush=True)
        write(report, Path(args.results), stem)        # after every job: a later one may not finish


def write(report, folder, stem):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = [f"# handgrad on a GPU{' (quick run)' if report['quick'] else ''}", "",
          f"{report['date']} · device: {report['device']}", "",
          "Seconds per epoch are medians over the run's epochs, measured after the device finished each epoch's "
          "work; test accuracy is measured after each epoch, off the clock.  \"× floor\" divides by the job's "
          "matrix products alone on the same device; \"÷ handgrad-torch\" above 1 means handgrad on PyTorch "
          "tensors is faster.", ""]
    md += [format_job(key, job, markdown=True) for key, job in report["jobs"].items()]
    (folder / f"{stem}.md").write_text("\n".join(md))
    print(f"results written to {folder / stem}.{{json,md}}", file=sys.stderr)


if __name__ == "__main__":
    main()
