"""``handgrad train --device``: a GPU where one is, one line saying what is missing where none is."""

import sys

import numpy as np
import pytest

import handgrad.cli.devices as devices
import handgrad.cli.train as train
from handgrad.arrays import NUMPY, ops_for
from handgrad.cli import main
from handgrad.errors import HandgradError
from handgrad.io.modelfile import load_model

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

RUN = ["train", "--epochs", "2", "--dtype", "float64", "--threads", "1", "--no-plots", "--no-progress"]


def test_cpu_is_numpy():
    assert devices.ops_for_device("cpu") is NUMPY and devices.ops_for_device(None) is NUMPY


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "CUDA", ""])
def test_a_device_that_is_not_one_is_refused_by_the_parser(text, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--device", text])
    assert "must be cpu, cuda, cuda:N or mps" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_says_so_in_one_line_before_loading_data(tmp_path, capsys):
    assert main([*RUN, "--device", "cuda", "--out", str(tmp_path / "m.npz")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "--device cuda: PyTorch is installed but sees no CUDA GPU here" in error
    assert not (tmp_path / "m.npz").exists()


def test_cuda_without_pytorch_or_cupy_names_both(monkeypatch):
    monkeypatch.setattr(devices, "_torch", lambda: None)
    monkeypatch.setattr(devices, "_cupy", lambda: None)
    with pytest.raises(HandgradError, match=r"needs PyTorch or CuPy built for CUDA, and neither is installed: "
                                            r"pip install torch \(or cupy-cuda12x\)"):
        devices.ops_for_device("cuda:0")


def test_mps_without_pytorch_names_it(monkeypatch):
    monkeypatch.setattr(devices, "_torch", lambda: None)
    with pytest.raises(HandgradError, match="--device mps needs PyTorch, which is not installed"):
        devices.ops_for_device("mps")


def test_a_gpu_device_without_array_api_compat_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "array_api_compat", None)
    with pytest.raises(HandgradError, match="needs array-api-compat, which is not installed"):
        devices.ops_for_device("cuda")


def test_a_gpu_index_past_the_last_one_is_refused():
    with pytest.raises(HandgradError, match=r"this machine has 2 CUDA GPUs \(cuda:0..cuda:1\)"):
        devices._check_index("cuda:2", 2, 2)


def test_training_on_another_namespace_writes_the_model_a_numpy_run_writes(tmp_path, monkeypatch, capsys):
    """The device path end to end, on PyTorch's CPU standing in for a GPU: same weights, same file format."""
    assert main([*RUN, "--out", str(tmp_path / "numpy.npz")]) == 0
    monkeypatch.setattr(train, "ops_for_device", lambda name: ops_for(torch, "cpu"))
    assert main([*RUN, "--device", "cuda", "--out", str(tmp_path / "torch.npz")]) == 0
    assert ", on torch cpu" in capsys.readouterr().err
    expected, moved = load_model(tmp_path / "numpy.npz"), load_model(tmp_path / "torch.npz")
    np.testing.assert_allclose(moved.model.get_weights(), expected.model.get_weights(), rtol=1e-10, atol=1e-12)
    assert moved.history[-1]["train_loss"] == pytest.approx(expected.history[-1]["train_loss"], rel=1e-10)
    assert moved.model.ops is NUMPY
