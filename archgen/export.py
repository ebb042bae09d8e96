"""Exporting a built model for deployment (ONNX, TorchScript), checked by running the export.

``export_model`` writes the file, loads it back with the runtime that will serve it
(onnxruntime's CPU provider, ``torch.jit.load``), runs it on the example input and on a
batch twice that size, and compares the outputs with the model's own. The file appears at
its path only once that check has passed: it is written to a temporary file beside it and
moved into place with ``os.replace``, so an export that fails, does not match or is
interrupted leaves whatever was at the path before untouched.

    model = archgen.create_model("mbv3_small")
    result = export_model(model, torch.randn(1, 3, 224, 224), "onnx", Path("mbv3_small.onnx"))
    result.max_abs_diff   # the largest |file - model| over both batches, at most atol

Nothing is downloaded: ``onnxscript`` (the ONNX exporter's operator library) and ``onnxruntime``
(the check) are installed with archgen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from .errors import SpecError

Runner = Callable[[torch.Tensor], torch.Tensor]
Writer = Callable[[nn.Module, torch.Tensor, Path], None]

# What torch.jit.trace, save and load each warn (FutureWarning) now that TorchScript is deprecated.
_JIT_DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


class ExportError(SpecError):
    """The exported file does not reproduce the model: it fails to run, or its outputs differ."""


@dataclass(frozen=True)
class ExportResult:
    """A checked export: the file, its format, its largest deviation from the model, the time taken."""

    path: Path
    fmt: str
    max_abs_diff: float
    seconds: float


def export_model(
    model: nn.Module, example: torch.Tensor, fmt: str, path: Path, *, atol: float = 1e-4
) -> ExportResult:
    """Export ``model`` to ``path`` as ``fmt`` ("onnx" or "torchscript") and check the file.

    The model is put in eval mode (and left there). The file's input is named ``input`` and its
    output ``logits``; the spatial size is the example's, the batch size is free. The check runs
    the written file on ``example`` and on a batch twice its size (the example and its mirror
    image) and compares with ``model``'s outputs; model and example should be on the CPU, where
    the check runs.

    Args:
        model: an ``ArchNet`` or any module taking one tensor and returning one tensor, such as
            its BatchNorm-folded ``torch.fx.GraphModule`` (channels-last or not).
        example: an input batch, e.g. ``torch.randn(1, 3, 224, 224)``.
        fmt: "onnx" (the torch.export-based exporter, run with onnxruntime) or "torchscript"
            (``torch.jit.trace``, run with ``torch.jit.load``).
        path: where the file goes; its directory is created if missing. An existing file there
            is replaced only by an export that passed the check.
        atol: the largest absolute difference from the model's outputs that passes.

    Returns:
        The path, the format, the largest absolute difference seen and the seconds taken.

    Raises:
        SpecError: an unknown format, or a model that does not
            return one tensor.
        ExportError: the written file fails to run on either batch, gives another shape, or
            differs from the model by more than ``atol``. Nothing is left at ``path`` (or what
            was there before is untouched).
    """
    if fmt not in _FORMATS:
        raise SpecError(f"export must be one of: {', '.join(_FORMATS)}, got {fmt!r}")
    write, load = _FORMATS[fmt]
    start = time.perf_counter()
    path = Path(path)
    model.eval()
    # The mirror image makes the two halves of the doubled batch differ, so a file that baked in
    # the example's batch size, or mixes samples across the batch, fails the check.
    inputs = (example, torch.cat([example, example.flip(-1)]))
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    if not isinstance(expected[0], torch.Tensor):
        raise SpecError(
            f"export needs a model that returns one tensor (logits), got a {type(expected[0]).__name__} "
            "(a features_only model?)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Beside `path` because os.replace is atomic only within one file system. Not mkstemp: the
    # exporters open the file by name themselves, so a name they create gets the permissions of
    # any new file, where mkstemp's would keep 0600.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with torch.no_grad():
            write(model, example, tmp)
            run = load(tmp)
            diff = max(_max_abs_diff(fmt, run, x, y) for x, y in zip(inputs, expected))
        if not diff <= atol:  # written so that a NaN difference fails too
            raise ExportError(
                f"{fmt} export differs from the model by {diff:.3g} (atol {atol:g}); nothing was written to {path}"
            )
        os.replace(tmp, path)
    except BaseException:  # an interrupt too: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise
    return ExportResult(path, fmt, diff, time.perf_counter() - start)


def _max_abs_diff(fmt: str, run: Runner, x: torch.Tensor, expected: torch.Tensor) -> float:
    try:
        got = run(x)
    except Exception as e:
        raise ExportError(f"the exported {fmt} file fails on a batch of {len(x)}: {e}") from e
    # Checked first because subtraction would broadcast a batch-1 output against the batch.
    if got.shape != expected.shape:
        raise ExportError(
            f"the exported {fmt} file gives shape {tuple(got.shape)} on a batch of {len(x)}, "
            f"the model {tuple(expected.shape)}"
        )
    return (got.double() - expected.double()).abs().max().item()


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The exporter's passes log each step at INFO, which a Hydra app would print: warnings only, meanwhile."""
    before = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def _write_onnx(model: nn.Module, example: torch.Tensor, file: Path) -> None:
    # The torch.export-based exporter (dynamo=True), not the legacy TorchScript-based one: it is
    # torch's default since 2.9 and the legacy one warns that it will be removed; it exports
    # every zoo model, where the legacy one fails on alexnet and vgg at inputs whose last feature
    # map is smaller than their adaptive pool's output; onnxscript, its operator library, is a
    # local package, so it needs no network. It is slower (seconds per model, not a fraction).
    with _quiet("onnxscript", "onnx_ir", "torch.onnx"):
        _export_onnx(model, example, file)


def _export_onnx(model: nn.Module, example: torch.Tensor, file: Path) -> None:
    torch.onnx.export(
        model,
        (example,),
        file,
        dynamo=True,
        input_names=["input"],
        output_names=["logits"],
        # A string names the ONNX dimension and becomes Dim.DYNAMIC, which lets torch.export guard
        # the batch size where a torch.export.Dim("batch") fails the export: a channels-last model
        # at batch 1 gets such a guard from its strides. The check on the doubled batch catches
        # a file that relies on one.
        dynamic_shapes=({0: "batch"},),
        external_data=False,  # one self-contained file, which one os.replace publishes
        verbose=False,  # verbose=None prints the exporter's progress to stdout
    )


def _load_onnx(file: Path) -> Runner:
    import onnxruntime  # imported here: a second or so, paid only by ONNX exports

    options = onnxruntime.SessionOptions()
    # Errors only: onnxruntime's warnings (an output shape that contradicts the graph's, say)
    # would print to stderr what the check then reports in its ExportError.
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {"input": x.numpy(force=True)})[0])

    return run


def _write_torchscript(model: nn.Module, example: torch.Tensor, file: Path) -> None:
    # torch.jit.script fails on some of the blocks' forwards; a trace is exact for these static
    # graphs, and export_model's check catches one that is not. check_trace=False because that
    # check, on the saved and reloaded file, supersedes the trace's own.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATED, category=FutureWarning)
        torch.jit.save(torch.jit.trace(model, (example,), check_trace=False), file)


def _load_torchscript(file: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATED, category=FutureWarning)
        return torch.jit.load(file, map_location="cpu")


# format -> (write the file, load it as a runner)
_FORMATS: dict[str, tuple[Writer, Callable[[Path], Runner]]] = {
    "onnx": (_write_onnx, _load_onnx),
    "torchscript": (_write_torchscript, _load_torchscript),
}
EXPORT_FORMATS = {"onnx": "onnx", "torchscript": "pt"}  # format -> file suffix
