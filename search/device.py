"""Where and how the evaluators run: device, mixed precision, memory format, CPU threads and
kernel determinism (``train.device`` / ``train.precision`` / ... and ``naswot.device``).

* ``device``: ``auto`` (CUDA when a GPU is present, else the CPU), ``cpu``, ``cuda`` or
  ``cuda:<index>``. Asking for CUDA where there is none stops before any trial.
* ``precision``: ``auto`` is bf16 autocast on a GPU that supports it, else fp16 autocast with a
  gradient scaler (Micikevicius et al. 2018, "Mixed Precision Training"), and fp32 on the CPU,
  whose autocast is slower than fp32 on CPUs without bf16 units.
* ``threads``: torch's intra-op threads on the CPU; ``None`` is every core this process may
  run on (its affinity mask), so a single worker uses the whole machine and workers pinned to
  disjoint cores (``search.parallel``, or ``taskset``) each use their own.
* ``deterministic``: deterministic kernels. On the CPU they cost nothing and are always on; on
  CUDA they are on only when asked for, since ``cudnn.benchmark`` (off then) picks the fastest
  convolution algorithm per shape and that choice may differ between runs.

A result repeats bit for bit for the same settings on the same machine, with a fixed thread
count on the CPU (how a reduction is split between threads changes its rounding) and with
``deterministic=true`` on CUDA.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from archgen import SpecError
from archgen.checks import check_setting, is_int

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICE_CHOICES = "one of auto, cpu, cuda or cuda:<index>"
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def owned_cores() -> int:
    """The cores this process may run on: its affinity mask where the OS has one, else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(setting: str, threads: object) -> None:
    """A thread count setting: a positive integer, or None for every core this process owns."""
    check_setting(setting, threads, threads is None or (is_int(threads) and threads >= 1), "a positive integer or null")


def is_device_name(name: object) -> bool:
    if not isinstance(name, str):
        return False
    if name in ("auto", "cpu", "cuda"):
        return True
    kind, _, index = name.partition(":")
    return kind == "cuda" and index.isdigit()


def resolve_device(setting: str, name: str) -> torch.device:
    """The device ``name`` stands for here; CUDA asked for where there is none is a one-line error."""
    if not is_device_name(name):
        raise SpecError(f"{setting} must be {DEVICE_CHOICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SpecError(f"{setting}={name} but no CUDA GPU is available here; use {setting}=cpu or {setting}=auto")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise SpecError(f"{setting}={name} but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                        f"numbered 0-{torch.cuda.device_count() - 1}")
    return device


def resolve_precision(setting: str, precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: fp32 throughout)."""
    if precision not in PRECISIONS:
        raise SpecError(f"{setting} must be one of: {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise SpecError(f"{setting}=fp16 needs a CUDA device (the CPU's fp16 kernels are few and slow); use fp32 or bf16")
    return _DTYPES[precision]


@dataclass(frozen=True)
class Runtime:
    """The settings resolved on this machine: what a training actually runs with."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None: fp32
    channels_last: bool
    threads: int
    deterministic: bool

    @classmethod
    def resolve(cls, prefix: str, device: str = "auto", precision: str = "auto", channels_last: bool = False,
                threads: int | None = None, deterministic: bool = False) -> Runtime:
        """``prefix``: the settings' section (``train``, ``naswot``), for the error messages."""
        where = resolve_device(f"{prefix}.device", device)
        dtype = resolve_precision(f"{prefix}.precision", precision, where)
        return cls(where, dtype, channels_last, owned_cores() if threads is None else threads, deterministic)

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def describe(self) -> str:
        """``cuda:0 (NVIDIA H200), bf16, channels-last`` or ``cpu, 2 threads, fp32``."""
        if self.device.type == "cuda":
            where = f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        else:
            where = f"cpu, {self.threads} thread{'s' if self.threads != 1 else ''}"
        return ", ".join([where, self.precision] + (["channels-last"] if self.channels_last else []))

    @property
    def pin(self) -> bool:
        """Whether batches decoded on the CPU should go to pinned memory (for an asynchronous copy)."""
        return self.device.type == "cuda"

    def model(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, in the memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device, in the memory format (an asynchronous copy from pinned memory)."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        """fp16's gradient scaler (a no-op for bf16 and fp32, whose range needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    @contextlib.contextmanager
    def seeded(self, seed: int) -> Iterator[None]:
        """Seed torch's generators (the device's too), set the threads and the kernels' determinism
        for the body, and restore all of it afterwards: an evaluation leaves its caller's state alone."""
        deterministic = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        num_threads = torch.get_num_threads()
        cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
        cuda = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)  # every generator: the CPU's and each GPU's
            # CPU kernels are deterministic at no cost; CUDA's when asked for. warn_only: a
            # block with no deterministic kernel still trains, with a warning
            strict = self.deterministic or self.device.type == "cpu"
            torch.use_deterministic_algorithms(strict, warn_only=True)
            torch.set_num_threads(self.threads)
            if self.device.type == "cuda":
                if self.deterministic:  # cuBLAS needs a fixed workspace to repeat itself
                    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.backends.cudnn.benchmark = not self.deterministic
                torch.backends.cudnn.deterministic = self.deterministic
            try:
                yield
            finally:
                torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
                torch.set_num_threads(num_threads)
                torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
