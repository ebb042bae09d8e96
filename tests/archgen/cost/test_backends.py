"""Latency in the runtime users deploy with (``latency.backend``): each backend runs the network it
is given, names itself in the fingerprint, keeps a lookup table of its own, and refuses in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import archgen
from archgen.cost import backends
from archgen.cost.backends import BACKENDS, prepare
from archgen.cost.latency import LatencySettings, measure
from archgen.cost.lut import LatencyTable

REPO = Path(__file__).resolve().parents[3]
FAST = {"warmup": 1, "repeats": 3}


def _tiny() -> archgen.ModelSpec:
    return archgen.load_spec("lenet5")  # 1x32x32: compiles and exports in seconds


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_runs_the_network_it_times(backend):
    spec = _tiny()
    model = archgen.build(spec).eval()
    x = torch.randn(2, spec.in_chans, *spec.input_size)
    with torch.inference_mode():
        expected = model(x)
        got = prepare(model, x, backend, "cpu", threads=1)()
    got = torch.from_numpy(got[0]) if backend == "onnxruntime" else got
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_is_measured_and_named_in_the_fingerprint(backend):
    spec = _tiny()
    settings = LatencySettings(backend=backend, **FAST)
    latency = measure(archgen.build(spec), spec.in_chans, spec.input_size, settings)
    assert latency.median_ms > 0 and latency.fingerprint["backend"] == backend
    runtime = latency.fingerprint["runtime"]
    assert runtime.startswith({"eager": "torch ", "deployed": "torch ", "onnxruntime": "onnxruntime ",
                               "compile": "torch.compile "}[backend])
    if backend == "onnxruntime":
        import onnxruntime

        assert f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider, optimisation all)" == runtime


def test_each_backend_keeps_its_own_lookup_table(tmp_path):
    spec = _tiny()
    tables = {b: LatencyTable(LatencySettings(backend=b, **FAST), tmp_path) for b in ("eager", "onnxruntime")}
    assert tables["eager"].path != tables["onnxruntime"].path
    for table in tables.values():
        assert table.predict(spec).total_ms > 0
        assert len(table) == len(spec.blocks)
    import json

    saved = json.loads(tables["onnxruntime"].path.read_text())
    assert saved["fingerprint"]["backend"] == "onnxruntime"
    assert LatencyTable(LatencySettings(backend="onnxruntime", **FAST), tmp_path).entries == tables["onnxruntime"].entries


def test_a_block_that_fails_to_export_is_one_line_naming_the_backend_and_the_block(tmp_path, monkeypatch):
    import archgen.export

    def broken(*args, **kwargs):
        raise RuntimeError("Unsupported ONNX operator aten::frobnicate\nfull trace follows")

    monkeypatch.setattr(archgen.export, "export_model", broken)
    table, spec = LatencyTable(LatencySettings(backend="onnxruntime", **FAST), tmp_path), _tiny()
    with pytest.raises(archgen.SpecError) as err:
        table.predict(spec)
    first = spec.blocks[0]
    assert str(err.value) == (f"latency.backend=onnxruntime: cannot export block {first.name} ({first.type}) to ONNX: "
                              "Unsupported ONNX operator aten::frobnicate")


def test_a_backend_that_is_not_installed_or_lacks_the_device_is_one_line(monkeypatch):
    monkeypatch.setattr(backends, "_onnxruntime", lambda: (_ for _ in ()).throw(
        archgen.SpecError("latency.backend=onnxruntime: onnxruntime is not installed (pip install onnxruntime)")))
    with pytest.raises(archgen.SpecError, match=r"^latency.backend=onnxruntime: onnxruntime is not installed"):
        LatencySettings(backend="onnxruntime").check_device()
    monkeypatch.undo()

    class CpuOnly:
        @staticmethod
        def get_available_providers():
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(backends, "_onnxruntime", lambda: CpuOnly)
    with pytest.raises(archgen.SpecError, match=r"^latency.backend=onnxruntime: this onnxruntime has no "
                                                r"CUDAExecutionProvider \(it has CPUExecutionProvider\)"):
        backends.check_backend("onnxruntime", "cuda")
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    with pytest.raises(archgen.SpecError, match=r"^latency.backend=compile: .* needs a C\+\+ compiler"):
        backends.check_backend("compile", "cpu")


@pytest.mark.parametrize(("args", "message"), [
    (["latency.backend=tensorrt"], "latency.backend must be one of: eager, deployed, onnxruntime, compile, got 'tensorrt'"),
    (["latency.backend=onnxruntime", "latency.ort_optimization=max"],
     "latency.ort_optimization must be one of: disable, basic, extended, all, got 'max'"),
])
def test_the_cli_refuses_an_unknown_backend_in_one_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "archgen", "model=lenet5", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == f"archgen: error: {message}", r.stderr


def test_the_cli_measures_in_the_backend_it_is_told(tmp_path):
    r = subprocess.run([sys.executable, "-m", "archgen", "model=lenet5", "latency.backend=onnxruntime", "table=false",
                        "latency.repeats=5", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "onnxruntime " in r.stdout and "(CPUExecutionProvider, optimisation all)" in r.stdout
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["latency"]["fingerprint"]["backend"] == "onnxruntime"
    assert np.isfinite(summary["latency"]["median_ms"])
