"""The memory a network needs, estimated before anything is allocated, and the bound it is held to.

The network is built on PyTorch's ``meta`` device, which gives every tensor its shape and no
storage, and run forward there once: its parameter count is exact, and every leaf module's
output is a feature map that training keeps for the backward pass. The estimate, at 4 bytes a
value (float32):

* training: the weights four times over (weights, gradients and AdamW's two moments; SGD with
  momentum needs three) plus every leaf module's output, for the whole batch;
* inference: the weights plus the largest feature map three times over (a layer's input, its
  output and a residual branch alive at once), for the whole batch.

It is an estimate: PyTorch's allocator, in-place activations and the framework's own tensors
move the real peak either way, by well under the factors a bound needs to catch (a width of
65,536 channels, a 30,000-pixel input). The bound, ``max_memory_gb``, is the machine's memory
by default, so that a network which cannot fit is refused in one line instead of failing inside
the allocator (or being killed by the operating system) minutes into a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..builder import build
from ..errors import SpecError
from ..spec import ModelSpec
from .cache import SpecCache

BYTES = 4  # float32
GB = 1e9
OPTIMISER_COPIES = 4  # weights, gradients, AdamW's two moments
LIVE_MAPS = 3  # inference: a layer's input, its output and a residual branch


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a network needs, for a batch, to train or to run."""

    weights: int
    activations: int
    batch: int
    training: bool

    @property
    def total(self) -> int:
        return self.weights + self.activations

    def describe(self) -> str:
        weights = "weights, gradients and optimiser state" if self.training else "weights"
        return (f"{_size(self.total)} to {'train' if self.training else 'run'} at batch {self.batch} "
                f"({weights} {_size(self.weights)}, feature maps {_size(self.activations)})")


def _size(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / 1e6:.1f} MB"


def estimate(spec: ModelSpec, batch: int, training: bool) -> MemoryEstimate:
    """The memory ``spec`` needs at ``batch`` images, built and run on the meta device (nothing allocated)."""
    params, maps = _shapes(spec)
    if training:
        return MemoryEstimate(OPTIMISER_COPIES * params * BYTES, batch * sum(maps) * BYTES, batch, training)
    return MemoryEstimate(params * BYTES, LIVE_MAPS * batch * max(maps, default=0) * BYTES, batch, training)


def _leaf_outputs(spec: ModelSpec) -> tuple[int, tuple[int, ...]]:
    """The values the weights and buffers hold, and every leaf module's output per image (the
    same in train and eval mode), from one forward on the meta device."""
    with torch.device("meta"):
        model = build(spec)
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    maps: list[int] = []

    def keep(module: nn.Module, args: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            maps.append(out[0].numel() if out.dim() else 1)  # per image

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(keep) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, spec.in_chans, *spec.input_size, device="meta"))
    except Exception:  # a user block that meta tensors cannot run: the block list's own outputs instead
        maps = [b.out_chs * (b.out_size[0] * b.out_size[1] if b.out_size else 1) for b in spec.blocks]
    finally:
        for h in hooks:
            h.remove()
    return params, tuple(maps)


_shapes = SpecCache(_leaf_outputs)  # a search estimates a network to time it, to evaluate it and to report it


def machine_memory_gb() -> float | None:
    """This machine's memory (a container's limit where it is lower), in GB; None where unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # Windows has no sysconf
        return None
    for limit in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = limit.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
        break
    return total / GB


def check_memory(spec: ModelSpec, batch: int, training: bool, max_memory_gb: float | None, device: str = "cpu") -> None:
    """Refuse, in one line, a network whose estimate is above ``max_memory_gb`` (None: the memory of
    ``device``, this machine's for the CPU)."""
    limit, where = max_memory_gb, f"max_memory_gb={max_memory_gb:g}" if max_memory_gb is not None else ""
    if limit is None:
        if device.startswith("cuda") and torch.cuda.is_available():
            index = torch.device(device).index or 0
            limit, where = torch.cuda.get_device_properties(index).total_memory / GB, f"the memory of {device}"
        else:
            limit, where = machine_memory_gb(), "this machine's memory"
        if limit is None:
            return
        where = f"{where}, {_size(limit * GB)} (max_memory_gb= sets another bound)"
    need = estimate(spec, batch, training)
    if need.total > limit * GB:
        raise SpecError(f"model {spec.name}: needs an estimated {need.describe()}, above {where}")


def check_max_memory_gb(value: object) -> float | None:
    """``max_memory_gb`` as a setting: a positive number of GB, or None for the machine's memory."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
        raise SpecError(f"max_memory_gb must be a positive number of GB or null (the machine's memory), got {value!r}")
    return float(value)
