"""The benchmark scripts' own logic: where results go, and the tables the docs train on."""

import datetime
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    """Import benchmarks/NAME.py as a module (the folder is not a package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_a_benchmark_run_writes_a_new_untracked_file_unless_told_to_record():
    bench = _script("bench")
    when = datetime.datetime(2026, 12, 2, 11, 58, 35, tzinfo=datetime.timezone.utc)
    assert bench.run_name(False, when) == "run-20261202T115835Z"
    assert bench.run_name(True, when) == "run-20261202T115835Z-quick"
    ignored = (BENCHMARKS.parent / ".gitignore").read_text().splitlines()
    assert "benchmarks/results/run-*" in ignored
    tracked = {p.stem for p in (BENCHMARKS / "results").glob("*.json")}
    assert "latest" in tracked and not any(name.startswith("run-") for name in tracked)


@pytest.mark.parametrize("name", ["../latest", ".hidden", ""])
def test_record_takes_a_plain_file_name(name, capsys):
    bench = _script("bench")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--record", name, "--jobs", "4"])
    assert stop.value.code == 2 and "plain file name" in capsys.readouterr().err


def test_small_tables_are_exported_with_named_labels_that_handgrad_reads(tmp_path):
    from handgrad.data.loaders import load_dataset

    tables = _script("small_tables").export(tmp_path)
    assert sorted(tables) == ["breast-cancer", "iris", "wine"]
    path, target = tables["iris"]
    data = load_dataset(path, target=target)
    assert target == "species" and data.classes.tolist() == ["setosa", "versicolor", "virginica"]
    assert len(data.X_train) + len(data.X_test) == 150 and data.n_features == 4
    assert data.feature_names[0] == "sepal_length_cm"
    assert np.isclose(data.X_train[0, 0], 5.1)


def test_the_table_states_each_time_against_the_physical_floor_and_shows_cold_starts():
    bench = _script("bench")
    job = {"recipe": {"name": "mnist5k", "target_accuracy": None},
           "results": {"floor": {"seconds": 0.12, "seconds_without_first_input_grad": 0.09,
                                 "update_traffic_seconds": 0.01, "physical_floor": 0.10, "peak_rss_mb": 60,
                                 "rss_before_mb": 50},
                       "handgrad": {"seconds": 0.15, "cold_extra_seconds": 0.05, "kernels": "compiled",
                                    "cold_kernels": "numpy", "test_accuracy": 0.9366, "peak_rss_mb": 190,
                                    "rss_before_mb": 45},
                       "torch": {"seconds": 0.30, "cold_extra_seconds": 1.5, "test_accuracy": 0.935,
                                 "peak_rss_mb": 330, "rss_before_mb": 45}},
           "command": {"command": "handgrad train --dataset mnist", "wall_seconds": 31.2, "peak_rss_mb": 433.4,
                       "test_accuracy": 0.9884}}
    head = bench.headers("1", job)
    table = {row[0]: dict(zip(head, row)) for row in bench.rows("1", job)}
    assert table["physical floor"]["× physical floor"] == "1.00" and table["all GEMMs"]["× physical floor"] == "1.20"
    hg = table["handgrad"]
    assert (hg["× physical floor"], hg["× all GEMMs"], hg["cold +s"], hg["update"]) == \
        ("1.50", "1.25", "+0.05", "numpy → compiled")
    assert table["torch"]["peer ÷ handgrad"] == "2.00" and table["torch"]["update"] == ""
    notes = bench.notes(job)
    assert notes[0] == ("physical floor = GEMMs without the first layer's G Wᵀ 0.0900 s + the optimizer step's "
                        "memory traffic 0.0100 s per epoch")
    assert "31.2 s wall, peak RSS 433 MB, test accuracy 0.9884" in notes[1]


def test_the_gpu_benchmark_reads_its_jobs_from_the_best_preset_and_bench_job_2():
    jobs = _script("gpu").jobs()
    best, second = jobs["best"], jobs["2"]
    assert (best.hidden, best.epochs, best.lr, best.input_dropout, best.dropout, best.shift, best.targets) == \
        ((1024, 512), 15, 0.1, 0.0, 0.0, 1, (0.99,))
    assert "784-1024-512-10, shifts ≤ 1 px, L2 5e-05" in best.title
    assert (second.hidden, second.epochs, second.l2, second.targets) == ((512, 256), 12, 5e-5, (0.985, 0.99))
    assert best.lr_at(0) == 0.1 and best.lr_at(7.5) == pytest.approx(0.05)


def test_the_gpu_benchmark_runs_every_contender_on_the_cpu_and_names_the_device(tmp_path):
    """Its dry run: a tiny job on PyTorch's CPU, through the same code a GPU run takes."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("array_api_compat")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                # tiny products: PyTorch's thread pool would only thrash
    try:
        _tiny_gpu_run(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _tiny_gpu_run(tmp_path):
    gpu = _script("gpu")
    job = gpu.GpuJob("tiny", "a tiny job", hidden=(16,), epochs=2, batch_size=64, lr=0.1, momentum=0.9, l2=1e-4,
                     input_dropout=0.1, dropout=0.2, shift=1, targets=(0.2, 0.99))
    rng = np.random.default_rng(0)
    X, y = rng.random((256, 784), dtype=np.float32), rng.integers(0, 10, size=256)
    device = gpu.Device("cpu")
    report = {"device": device.describe(), "quick": True, "date": "2026-12-04T00:00:00+00:00",
              "jobs": {"tiny": gpu.run_job(job, (X, y, X[:64], y[:64]), device)}}
    gpu.write(report, tmp_path, "run-test-gpu")
    results = report["jobs"]["tiny"]["results"]
    assert list(results) == ["floor", "handgrad-torch", "torch"]
    for name in ("handgrad-torch", "torch"):
        assert len(results[name]["curve"]) == 2 and {"time_to_0.200", "time_to_0.990"} <= set(results[name])
    text = (tmp_path / "run-test-gpu.md").read_text()
    assert "device: " in text and "CPU (a dry run)" in text
    assert "| handgrad-torch |" in text and "| torch |" in text and "| matmul floor |" in text
    assert "s to 20.0%" in text


def test_a_gpu_contender_that_fails_is_a_row_of_its_own_and_the_others_still_run(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("array_api_compat")
    gpu = _script("gpu")
    monkeypatch.setattr(gpu, "contenders", lambda device: ["floor", "handgrad-torch", "handgrad-cupy", "torch"])
    real = gpu.handgrad

    def handgrad(job, data, device, namespace):
        if namespace == "cupy":
            raise RuntimeError("no CUDA device\nsecond line")
        return real(job, data, device, namespace)

    monkeypatch.setattr(gpu, "handgrad", handgrad)
    job = gpu.GpuJob("tiny", "a tiny job", hidden=(8,), epochs=1, batch_size=64, lr=0.1, momentum=0.9, l2=0.0,
                     targets=(0.2,))
    rng = np.random.default_rng(0)
    X, y = rng.random((128, 784), dtype=np.float32), rng.integers(0, 10, size=128)
    result = gpu.run_job(job, (X, y, X[:64], y[:64]), gpu.Device("cpu"))
    assert result["results"]["handgrad-cupy"] == {"error": "RuntimeError: no CUDA device"}
    assert "seconds" in result["results"]["torch"]
    assert "| handgrad-cupy | failed |" in gpu.format_job("tiny", result, markdown=True)


def test_the_gpu_benchmark_says_in_one_line_when_there_is_no_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit, match="PyTorch sees no CUDA GPU here"):
        _script("gpu").Device("cuda")


def test_preset_accuracy_counts_the_products_and_takes_settings_as_the_commands_flags():
    import handgrad as hg

    script = _script("preset_accuracy")
    assert script.flag_arguments(["hidden=512,512", "flip", "input-dropout=0.1"]) == [
        "--hidden", "512,512", "--flip", "--input-dropout", "0.1"]
    with pytest.raises(SystemExit, match="not a setting"):
        script.flag_arguments(["hiden=5"])
    with pytest.raises(SystemExit, match="switched on"):
        script.flag_arguments(["flip=false"])
    # 784-1024-1024-10: forward and ∂W of all three products, ∂X of the last two, 2 FLOPs a multiply-add
    model = hg.Sequential(hg.Dropout(0.1), hg.Dense(784, 1024), hg.ReLU(), hg.Dense(1024, 1024), hg.ReLU(),
                          hg.Dense(1024, 10))
    assert script.flops_per_image(model) == 2 * (3 * (784 * 1024 + 1024 * 1024 + 1024 * 10) - 784 * 1024)
    assert script.training_rows(60000, 0.05) == 57000 and script.training_rows(60000, 0.0) == 60000
    assert script.command("fashion-mnist", "best", ["epochs=3"], 2) == \
        "handgrad train --dataset fashion-mnist --preset best --epochs 3 --seed 2"
