"""``evaluator=naswot``: the training-free score of Mellor et al., "Neural Architecture Search
without Training", ICML 2021: at initialisation, how differently the network's rectifiers switch
on for the images of one minibatch (``naswot_score``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archgen import ModelSpec, SpecError, build
from archgen.checks import check_setting, is_int

from ..data import Dataset
from ..device import DEVICE_CHOICES, Runtime, check_threads, is_device_name
from .base import Candidate, Evaluator, Footprint, Report, Score, check_batch, check_fits, register_evaluator


# Activations whose output is positive exactly when their input is, so that ``output > 0`` is
# the unit's on/off state, the binary code of Mellor et al. Gates (sigmoid, hard sigmoid) are
# positive everywhere and code nothing.
RECTIFIERS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.Hardswish,
    nn.SiLU,
    nn.GELU,
    nn.Mish,
)


@dataclass(frozen=True)
class NaswotSettings:
    """The training-free score (``naswot.<field>``)."""

    batch_size: int = 64  # images in the minibatch; K is batch_size x batch_size
    seed: int = 0  # of the initial weights and the minibatch
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:<index>
    threads: int | None = None  # torch CPU threads, as for training; None: the cores this process may run on

    def __post_init__(self) -> None:
        check_setting("naswot.batch_size", self.batch_size, is_int(self.batch_size) and self.batch_size >= 2, "an integer >= 2")
        check_setting("naswot.seed", self.seed, is_int(self.seed), "an integer")
        check_setting("naswot.device", self.device, is_device_name(self.device), DEVICE_CHOICES)
        check_threads("naswot.threads", self.threads)

    def runtime(self) -> Runtime:
        # fp32 and the default memory format: the score is a determinant of 0/1 codes, and the
        # cost is one forward pass, which mixed precision would not shorten by much
        return Runtime.resolve("naswot", self.device, "fp32", False, self.threads, deterministic=True)


@dataclass(frozen=True)
class NaswotResult:
    score: float  # log|K|; -inf when two images of the minibatch get the same code
    seconds: float
    params: int



@torch.no_grad()
def naswot_score(model: nn.Module, x: torch.Tensor) -> float:
    """log|K| of Mellor et al. (2021) for the minibatch ``x``, in the model's current mode.

    Every rectifier unit (``RECTIFIERS``) gives every image a bit, whether the unit is on
    (``output > 0``); with ``c_i`` the bits of image ``i`` over all units, K_ij is the number
    of units on which ``c_i`` and ``c_j`` agree: ``K = C C^T + (1 - C)(1 - C)^T``. A network
    that sends the images into different linear regions has a K close to diagonal, hence a
    large determinant. The paper scores networks in train mode (batch statistics in BatchNorm).
    """
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)

    def accumulate(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        codes = (output > 0).flatten(1).float()
        # sums of 0/1 products are exact in float32 up to 2**24 units per module; float64 across modules
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(accumulate) for m in model.modules() if isinstance(m, RECTIFIERS)]
    if not handles:
        raise SpecError(f"naswot needs rectifier activations ({', '.join(t.__name__ for t in RECTIFIERS)}); the model has none")
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return torch.linalg.slogdet(kernel).logabsdet.item()


def naswot(spec: ModelSpec, data: Dataset, settings: NaswotSettings = NaswotSettings()) -> NaswotResult:
    """Score ``spec`` at initialisation on a seeded minibatch of the training images (``naswot_score``)."""
    check_fits(spec, data)
    check_batch("naswot.batch_size", settings.batch_size, data)
    n = len(data.train_y)
    runtime = settings.runtime()
    start = time.perf_counter()
    with runtime.seeded(settings.seed):
        model = runtime.model(build(spec)).train()
        batch = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))[: settings.batch_size]
        images, _ = next(data.batches("train", [batch]))
        score = naswot_score(model, runtime.inputs(images))
    return NaswotResult(score=score, seconds=time.perf_counter() - start, params=sum(p.numel() for p in model.parameters()))



@register_evaluator("naswot")
class Naswot(Evaluator):
    """NASWOT's score of the proxy network at initialisation, on one minibatch of the training images."""

    Settings = NaswotSettings
    metric = "naswot"
    local_settings = frozenset({"device", "threads"})

    def __init__(self, settings: NaswotSettings | None = None) -> None:
        super().__init__(settings)
        self._runtime = self.settings.runtime()

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def footprint(self) -> Footprint:
        return Footprint(self.settings.batch_size, learns=False, device=str(self._runtime.device))

    def check(self, data: Dataset | None) -> None:
        if data is not None:
            check_batch("naswot.batch_size", self.settings.batch_size, data)

    def cost(self, data: Dataset | None) -> str:
        return f"one forward pass of {self.settings.batch_size} images at initialisation, no training"

    def evaluate(self, candidate: Candidate, data: Dataset | None, report: Report | None = None) -> Score:
        assert candidate.proxy is not None and data is not None
        result = naswot(candidate.proxy, data, self.settings)
        return Score(result.score, result.seconds)
