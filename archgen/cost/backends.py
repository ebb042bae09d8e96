"""The runtimes a latency is measured in (``latency.backend``): what users deploy with.

* ``eager``: the built module in eager PyTorch (eval mode, ``torch.inference_mode``).
* ``deployed``: archgen's inference form in eager PyTorch (``archgen.deploy``: BatchNorm folded
  into the convolutions, channels-last).
* ``onnxruntime``: the ONNX file ``export_model`` writes and checks (the inference form), in an
  ONNX Runtime session: ``latency.threads`` intra-op threads, one inter-op thread, sequential
  execution, graph optimisation ``latency.ort_optimization`` (default ``all``), the CPU execution
  provider, or CUDA's with ``latency.device=cuda`` (then the figure includes the input's copy to
  the GPU and the output's back, as a caller of ``session.run`` pays them).
* ``compile``: ``torch.compile`` (inductor) of the inference form; its warm-up runs compile it,
  and only the compiled runs are timed.

``prepare`` turns a module into the zero-argument run that ``latency.time_runs`` times, so every
latency figure (``python -m archgen``, the lookup table, ``python -m archgen.validate``, the search)
is measured in the backend its settings name, and the backend and its version are part of the
fingerprint: figures of two backends never share a table.
"""

from __future__ import annotations

import copy
import functools
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import export  # the module, not export_model: looked up when called, so tests can replace it
from ..deploy import deploy
from ..errors import SpecError
# The protocol is defined in the script users copy to the target device, which cannot import
# archgen; taking it from there keeps this machine's and the target's figures one protocol.
from ..ort_bench import LEVELS, session_options

BACKENDS = ("eager", "deployed", "onnxruntime", "compile")
ORT_OPTIMIZATION = tuple(LEVELS)

Run = Callable[[], Any]


def check_backend(backend: str, device: str) -> None:
    """Fail early, in one line, where ``backend`` cannot run here."""
    if backend == "onnxruntime":
        ort = _onnxruntime()
        provider = _provider(device)
        if provider not in ort.get_available_providers():
            raise SpecError(f"latency.backend=onnxruntime: this onnxruntime has no {provider} (it has "
                            f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use latency.device=cpu")
    elif backend == "compile" and device == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise SpecError("latency.backend=compile: torch.compile's CPU code generator needs a C++ compiler, and none "
                        "is on PATH (install g++)")


def backend_version(backend: str, device: str, ort_optimization: str) -> str:
    """The runtime behind a figure, for its fingerprint: "onnxruntime 1.32.0 (CPUExecutionProvider, optimisation all)"."""
    if backend == "onnxruntime":
        return f"onnxruntime {_onnxruntime().__version__} ({_provider(device)}, optimisation {ort_optimization})"
    if backend == "compile":
        return f"torch.compile {torch.__version__} (inductor)"
    return f"torch {torch.__version__} eager" + (", inference form" if backend == "deployed" else "")


def prepare(module: nn.Module, example: torch.Tensor, backend: str, device: str, threads: int,
            ort_optimization: str = "all", what: str = "the model", raw: bool = False) -> Run:
    """A zero-argument run of ``module`` on ``example`` in ``backend`` (module and example on ``device``).

    ``what`` names the module in an error: "block stages.2.1 (bneck)". An export or compilation
    that fails is a ``SpecError`` naming the backend and ``what``. ``raw``: export or compile the
    module as it is, not its inference form (a reference implementation, say)."""
    module = module.eval()
    if backend == "eager":
        return functools.partial(module, example)
    try:
        inference = module if raw and backend != "deployed" else deploy(module)
    except SpecError as e:
        raise SpecError(f"latency.backend={backend}: cannot build the inference form of {what}: {e}") from None
    if backend == "deployed":
        return functools.partial(inference, example.contiguous(memory_format=torch.channels_last)
                                 if example.dim() == 4 else example)
    if backend == "compile":
        compiled = torch.compile(inference)
        return functools.partial(_compiled_run, compiled, example, what)
    if backend == "onnxruntime":
        return _ort_run(inference, example, device, threads, ort_optimization, what)
    raise SpecError(f"latency.backend must be one of: {', '.join(BACKENDS)}, got {backend!r}")


def _compiled_run(compiled: Callable[[torch.Tensor], Any], example: torch.Tensor, what: str) -> Any:
    try:
        return compiled(example)
    except Exception as e:  # inductor's errors are long: the first line names the cause
        if isinstance(e, SpecError):
            raise
        detail = _first_line(e)
        detail = detail if detail == type(e).__name__ else f"{type(e).__name__}: {detail}"
        raise SpecError(f"latency.backend=compile: torch.compile fails on {what}: {detail}") from None


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise SpecError("latency.backend=onnxruntime: onnxruntime is not installed (pip install onnxruntime)") from None
    return onnxruntime


def _provider(device: str) -> str:
    return "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"


def _first_line(e: BaseException) -> str:
    """An exception in one line: its message's first line (exporters' and compilers' run long), else its type."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, what: str) -> Path:
    """``module`` exported to ``path`` by ``export_model`` and checked; a failure is one line naming ``what``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing notes; its check is what counts
        try:
            return export.export_model(module, example, "onnx", path).path
        except SpecError as e:
            raise SpecError(f"cannot export {what} to ONNX: {e}") from None
        except Exception as e:  # the exporter's own failure
            raise SpecError(f"cannot export {what} to ONNX: {_first_line(e)}") from None


def _ort_run(inference: nn.Module, example: torch.Tensor, device: str, threads: int, ort_optimization: str,
             what: str) -> Run:
    """Export the inference form (checked against PyTorch), load it in a session, and return its run."""
    ort = _onnxruntime()
    cpu = example.detach().cpu()
    source = inference if example.device.type == "cpu" else copy.deepcopy(inference).cpu()  # it may share tensors
    with tempfile.TemporaryDirectory(prefix="archgen-ort-") as tmp:
        try:
            file = export_onnx(source, cpu, Path(tmp) / "model.onnx", what)
        except SpecError as e:
            raise SpecError(f"latency.backend=onnxruntime: {e}") from None
        session = ort.InferenceSession(str(file), session_options(ort, threads, ort_optimization),
                                       providers=[_provider(device)])
    feed = {"input": cpu.numpy()}
    return functools.partial(session.run, None, feed)
