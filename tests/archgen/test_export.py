"""Export for deployment: the written file runs, matches the model, and appears only once checked."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

import archgen
from archgen.export import ExportError, export_model
from tests.conftest import randomize_bn

FORMATS = ["onnx", "torchscript"]
SIZE = 64


def _zoo(name: str, **knobs) -> nn.Module:
    # Random BN statistics, so that the logits depend on every layer: a fresh MobileNet's are
    # ~1e-9, which any file at all would match within 1e-4.
    return randomize_bn(archgen.create_model(name, input_size=SIZE, **knobs)).eval()


MODELS = {
    "mbv3_small": lambda: _zoo("mbv3_small"),
    "mbv2_w0.5": lambda: _zoo("mbv2", width_mult=0.5),
    "resnet18": lambda: _zoo("resnet18"),
    # The deployment form: an fx.GraphModule with BatchNorm folded into the convs, channels-last.
    "mbv3_small_fused_channels_last": lambda: fuse(_zoo("mbv3_small")).to(memory_format=torch.channels_last),
}


def _run_file(fmt: str, path, x: torch.Tensor) -> torch.Tensor:
    """Run an exported file the way a deployment would, independently of archgen.export."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (inp,), (out,) = session.get_inputs(), session.get_outputs()
        assert (inp.name, out.name) == ("input", "logits")
        assert inp.shape == ["batch", 3, SIZE, SIZE]  # dynamic batch, fixed spatial size
        return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the format is the point
        return torch.jit.load(path)(x)


def _perturb_runtime(fmt: str, monkeypatch, delta: float = 1e-3) -> None:
    """Make the runtime that loads the written file return outputs off by ``delta``."""
    if fmt == "onnx":
        import onnxruntime

        class Perturbed(onnxruntime.InferenceSession):
            def run(self, *args, **kwargs):
                return [o + delta for o in super().run(*args, **kwargs)]

        monkeypatch.setattr(onnxruntime, "InferenceSession", Perturbed)
    else:
        load = torch.jit.load

        def perturbed_load(*args, **kwargs):
            module = load(*args, **kwargs)
            return lambda x: module(x) + delta

        monkeypatch.setattr(torch.jit, "load", perturbed_load)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MODELS)
def test_export_writes_a_file_that_matches_the_model(name, fmt, tmp_path, capfd):
    model = MODELS[name]()
    x = torch.randn(1, 3, SIZE, SIZE)
    path = tmp_path / f"{name}.{fmt}"
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_model(model, x, fmt, path)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr() == ("", "")  # no progress lines, no logs
    print(f"{name} {fmt}: max |diff| = {result.max_abs_diff:.3g} in {result.seconds:.1f} s")
    assert (result.path, result.fmt) == (path, fmt)
    assert result.max_abs_diff <= 1e-4
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it
    # Recomputed from the file, on the example within a batch size the check did not use.
    batch = torch.cat([x, torch.randn(2, 3, SIZE, SIZE)])
    with torch.no_grad():
        expected = model(batch)
    got = _run_file(fmt, path, batch)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4
    assert expected.abs().max().item() > 1e-2  # the logits are not ~0, so the match means something


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(archgen.SpecError, match=r"^export must be one of: onnx, torchscript, got 'tflite'$"):
        export_model(_zoo("lenet5"), torch.randn(1, 1, SIZE, SIZE), "tflite", tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preexisting", [False, True], ids=["new", "preexisting"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failing_check_leaves_the_path_as_it_was(fmt, preexisting, tmp_path, monkeypatch):
    path = tmp_path / f"lenet5.{fmt}"
    if preexisting:
        path.write_bytes(b"the previous export")
    _perturb_runtime(fmt, monkeypatch)
    with pytest.raises(ExportError, match=rf"^{fmt} export differs from the model by 0\.001 \(atol 0\.0001\)"):
        export_model(_zoo("lenet5"), torch.randn(1, 1, SIZE, SIZE), fmt, path)
    assert list(tmp_path.iterdir()) == ([path] if preexisting else [])
    if preexisting:
        assert path.read_bytes() == b"the previous export"


def test_the_tolerance_is_the_callers(tmp_path, monkeypatch):
    _perturb_runtime("torchscript", monkeypatch, delta=1e-3)
    result = export_model(_zoo("lenet5"), torch.randn(1, 1, SIZE, SIZE), "torchscript", tmp_path / "m.pt", atol=1e-2)
    assert result.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert list(tmp_path.iterdir()) == [tmp_path / "m.pt"]


class FixedBatch(nn.Module):
    """Traced or exported at batch 1, the file reshapes to batch 1 whatever its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)).reshape(int(x.shape[0]), -1)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_fixed_to_the_example_batch_is_refused(fmt, tmp_path):
    with pytest.raises(ExportError, match=rf"the exported {fmt} file gives shape \(1, 6\) on a batch of 2"):
        export_model(FixedBatch(), torch.randn(1, 3, 8, 8), fmt, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_export_leaves_the_path_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    path.write_bytes(b"the previous export")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.jit, "load", interrupted)  # after the file was written
    with pytest.raises(KeyboardInterrupt):
        export_model(_zoo("lenet5"), torch.randn(1, 1, SIZE, SIZE), "torchscript", path)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == b"the previous export"


def test_a_file_that_fails_to_run_is_an_export_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        def run(x):
            raise RuntimeError("unsupported operator")

        return run

    monkeypatch.setattr(torch.jit, "load", broken)
    with pytest.raises(ExportError, match=r"the exported torchscript file fails on a batch of 1: unsupported operator"):
        export_model(_zoo("lenet5"), torch.randn(1, 1, SIZE, SIZE), "torchscript", tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_features_only_model_is_refused(tmp_path):
    model = archgen.create_model("mbv3_small", features_only=True, input_size=SIZE)
    with pytest.raises(archgen.SpecError, match="returns one tensor"):
        export_model(model, torch.randn(1, 3, SIZE, SIZE), "torchscript", tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
