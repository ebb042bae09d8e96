"""Accuracy evaluators of the search: how good an architecture is on a dataset, cheaply.

* ``train``: a short training from scratch, then top-1 on the validation split; the
  reduced-training proxy of NAS. Before validating, the BatchNorm statistics are recomputed
  with the final weights ("precise BN", Wu & Johnson, "Rethinking 'Batch' in BatchNorm",
  2021): a few hundred steps leave running averages with MobileNetV3's momentum of 0.01
  close to their initial values, and the validation at chance.
* ``naswot``: the training-free score of Mellor et al., "Neural Architecture Search without
  Training", ICML 2021: at initialisation, how differently the network's rectifiers switch
  on for the images of one minibatch (``naswot_score``).

``evaluate(spec, name, data, settings)`` runs one by name. A trial the search should record as
failed and go past (a loss that is not finite) raises ``TrialFailed``; a spec that does not fit
the data, or a bad setting, raises ``archgen.SpecError``.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from archgen import ModelSpec, SpecError, build

from .data import Dataset, check_setting, is_int, is_real

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


class TrialFailed(RuntimeError):
    """The architecture could not be evaluated (e.g. its loss diverged): a failed trial, not a bad setting."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_threads(setting: str, threads: int | None) -> None:
    check_setting(setting, threads, threads is None or (is_int(threads) and threads >= 1), "a positive integer or null")


@dataclass(frozen=True)
class TrainSettings:
    """Short training from scratch (``train.<field>``). The defaults train MobileNetV3-Large
    (1 channel, 32x32) to about 98 % on digits in about 25 s on one CPU thread."""

    epochs: int = 4
    # small batches: 4x the steps of 64 for 1.4x the time on a CPU, and about 2.5x less seed
    # noise. The last incomplete batch of an epoch is dropped: BatchNorm needs > 1 sample
    batch_size: int = 16
    lr: float = 0.025  # peak learning rate, after a linear warmup; cosine decay to 0 by the last step
    warmup_epochs: float = 0.5
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adamw"
    weight_decay: float = 4e-5  # MobileNetV2's
    label_smoothing: float = 0.0
    # random crop of a zero-padded image (size // 8 pixels on each side) and horizontal flip, per
    # training image (the CIFAR recipe of He et al. 2016, Sec. 4.2); off for digits, whose flips are other digits
    augment: bool = False
    seed: int = 0  # of the initial weights, the batch order, the augmentation and dropout
    # trainings from seeds seed, seed + 1, ..., seed + repeats - 1; the result is their mean. The
    # seed moves a short training's accuracy by about as much as the architecture does, and the
    # mean of n seeds has 1/sqrt(n) of that noise
    repeats: int = 1
    # torch CPU threads while training. 1: results do not depend on the machine's core count, and
    # nets this small gain little from more (~1.4x from 2); None: leave torch's setting
    threads: int | None = 1

    def __post_init__(self) -> None:
        check_setting("train.epochs", self.epochs, is_int(self.epochs) and self.epochs >= 1, "a positive integer")
        check_setting("train.batch_size", self.batch_size, is_int(self.batch_size) and self.batch_size >= 2, "an integer >= 2")
        check_setting("train.lr", self.lr, is_real(self.lr) and self.lr > 0, "a positive number")
        check_setting("train.warmup_epochs", self.warmup_epochs, is_real(self.warmup_epochs) and self.warmup_epochs >= 0, "a number >= 0")
        check_setting("train.optimizer", self.optimizer, self.optimizer in ("sgd", "adamw"), "sgd or adamw")
        check_setting("train.weight_decay", self.weight_decay, is_real(self.weight_decay) and self.weight_decay >= 0, "a number >= 0")
        check_setting("train.label_smoothing", self.label_smoothing, is_real(self.label_smoothing) and 0 <= self.label_smoothing < 1, "a number in [0, 1)")
        check_setting("train.augment", self.augment, isinstance(self.augment, bool), "true or false")
        check_setting("train.seed", self.seed, is_int(self.seed), "an integer")
        check_setting("train.repeats", self.repeats, is_int(self.repeats) and self.repeats >= 1, "a positive integer")
        _check_threads("train.threads", self.threads)

    @property
    def seeds(self) -> range:
        """The seeds of the trainings averaged: ``seed``, ..., ``seed + repeats - 1``."""
        return range(self.seed, self.seed + self.repeats)

    @property
    def seeds_label(self) -> str:
        return f"seed {self.seed}" if self.repeats == 1 else f"seeds {self.seeds[0]}-{self.seeds[-1]}"

    def after(self, repeats: int | None = None) -> TrainSettings:
        """The same training from the seeds after these, none shared: ``repeats`` of them (default: as many)."""
        return replace(self, seed=self.seed + self.repeats, repeats=self.repeats if repeats is None else repeats)


@dataclass(frozen=True)
class NaswotSettings:
    """The training-free score (``naswot.<field>``)."""

    batch_size: int = 64  # images in the minibatch; K is batch_size x batch_size
    seed: int = 0  # of the initial weights and the minibatch
    threads: int | None = 1  # torch CPU threads, as for training; None: leave torch's setting

    def __post_init__(self) -> None:
        check_setting("naswot.batch_size", self.batch_size, is_int(self.batch_size) and self.batch_size >= 2, "an integer >= 2")
        check_setting("naswot.seed", self.seed, is_int(self.seed), "an integer")
        _check_threads("naswot.threads", self.threads)


@dataclass(frozen=True)
class TrainResult:
    accuracy: float  # top-1 on the validation split, in [0, 1]; the mean over the repeats
    loss: float  # mean cross-entropy on the validation split (without label smoothing); the mean over the repeats
    epochs: int
    seconds: float  # wall time of the whole evaluation: build, training, BN statistics, validation, every repeat
    params: int
    accuracies: tuple[float, ...]  # each repeat's, in seed order

    @property
    def score(self) -> float:
        """What the search maximises."""
        return self.accuracy


@dataclass(frozen=True)
class NaswotResult:
    score: float  # log|K|; -inf when two images of the minibatch get the same code
    seconds: float
    params: int


EvalResult = TrainResult | NaswotResult


def check_fits(spec: ModelSpec, data: Dataset) -> None:
    """Refuse a spec whose input or output does not match the data, naming each mismatch."""
    pairs = [
        ("in_chans", spec.in_chans, data.in_chans),
        ("input_size", spec.input_size, (data.size, data.size)),
        ("num_classes", spec.num_classes, data.num_classes),
    ]
    wrong = [f"{what} {ours} (the data's: {theirs})" for what, ours, theirs in pairs if ours != theirs]
    if spec.num_classes == data.num_classes and spec.output_shape != (data.num_classes,):
        wrong.append(f"output shape {spec.output_shape}, not {data.num_classes} class logits")
    if wrong:
        raise SpecError(f"{spec.source}: {spec.name} does not fit data {data.name}: {', '.join(wrong)}")


@contextlib.contextmanager
def _reproducible(seed: int, threads: int | None) -> Iterator[None]:
    """Seed torch's CPU generator, make its kernels deterministic and set the thread count;
    restore all three afterwards, so that an evaluation leaves the caller's state alone.

    The thread count belongs here too: how a CPU reduction is split between threads changes
    its rounding, so the same seed repeats bit for bit only with the same number of threads.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    num_threads = torch.get_num_threads()
    # every tensor here lives on the CPU, so its generator is the only one to fork and seed
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        # warn_only: a block with no deterministic kernel still evaluates, with a warning
        torch.use_deterministic_algorithms(True, warn_only=True)
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_num_threads(num_threads)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor per step: linear warmup to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    lr, weight_decay = settings.lr, settings.weight_decay
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) shifted by a random crop of its zero-padded self (pad
    ``H // 8``; zero is the mean of normalised data) and flipped left-right with probability 1/2."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=generator) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    crops = padded.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(3), crops).contiguous()


@torch.no_grad()
def _recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace every BatchNorm's running statistics by their mean over full batches of ``x``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average, every batch weighs the same
        m.train()
    for i in range(len(x) // batch_size):
        model(x[i * batch_size : (i + 1) * batch_size])
    model.eval()


@torch.no_grad()
def _validate(model: nn.Module, data: Dataset, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) on the validation split."""
    model.eval()
    loss, correct = 0.0, 0
    for x, y in zip(data.val_x.split(batch_size), data.val_y.split(batch_size)):
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    return loss / len(data.val_y), correct / len(data.val_y)


def train(spec: ModelSpec, data: Dataset, settings: TrainSettings = TrainSettings()) -> TrainResult:
    """Train ``spec`` from scratch on ``data.train_*`` and measure top-1 on ``data.val_*``,
    ``settings.repeats`` times from consecutive seeds, and average.

    The same spec, data and settings give bit-for-bit the same result on the same machine.
    """
    check_fits(spec, data)
    n, batch_size = len(data.train_y), settings.batch_size
    check_setting("train.batch_size", batch_size, n // batch_size > 0, f"at most the {n} training samples of data {data.name}")
    start = time.perf_counter()
    runs = [_train_once(spec, data, settings, seed) for seed in settings.seeds]
    losses, accuracies, params = zip(*runs)
    return TrainResult(
        accuracy=statistics.fmean(accuracies),
        loss=statistics.fmean(losses),
        epochs=settings.epochs,
        seconds=time.perf_counter() - start,
        params=params[0],
        accuracies=tuple(accuracies),
    )


def _train_once(spec: ModelSpec, data: Dataset, settings: TrainSettings, seed: int) -> tuple[float, float, int]:
    """One training from ``seed``: (validation loss, top-1, parameters)."""
    n, batch_size = len(data.train_y), settings.batch_size
    steps_per_epoch = n // batch_size
    total_steps = settings.epochs * steps_per_epoch
    with _reproducible(seed, settings.threads):
        model = build(spec)
        optimizer = _optimizer(model, settings)
        warmup_steps = round(settings.warmup_epochs * steps_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(warmup_steps, total_steps))
        order = torch.Generator().manual_seed(seed)
        model.train()
        for epoch in range(settings.epochs):
            batches = torch.randperm(n, generator=order)[: steps_per_epoch * batch_size].view(steps_per_epoch, batch_size)
            for step, idx in enumerate(batches):
                x = augment(data.train_x[idx], order) if settings.augment else data.train_x[idx]
                logits = model(x)
                loss = F.cross_entropy(logits, data.train_y[idx], label_smoothing=settings.label_smoothing)
                if not torch.isfinite(loss):
                    raise TrialFailed(f"{spec.name}: training loss is {loss.item()} at epoch {epoch + 1}, step {step + 1} (seed {seed})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        _recalibrate_bn(model, data.train_x, batch_size)
        val_loss, accuracy = _validate(model, data, batch_size)
    if not math.isfinite(val_loss):
        raise TrialFailed(f"{spec.name}: validation loss is {val_loss} after training (seed {seed})")
    return val_loss, accuracy, _num_params(model)


@torch.no_grad()
def naswot_score(model: nn.Module, x: torch.Tensor) -> float:
    """log|K| of Mellor et al. (2021) for the minibatch ``x``, in the model's current mode.

    Every rectifier unit (``RECTIFIERS``) gives every image a bit, whether the unit is on
    (``output > 0``); with ``c_i`` the bits of image ``i`` over all units, K_ij is the number
    of units on which ``c_i`` and ``c_j`` agree: ``K = C C^T + (1 - C)(1 - C)^T``. A network
    that sends the images into different linear regions has a K close to diagonal, hence a
    large determinant. The paper scores networks in train mode (batch statistics in BatchNorm).
    """
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64)

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
    """Score ``spec`` at initialisation on a seeded minibatch of ``data.train_x`` (``naswot_score``)."""
    check_fits(spec, data)
    n = len(data.train_y)
    check_setting("naswot.batch_size", settings.batch_size, settings.batch_size <= n, f"at most the {n} training samples of data {data.name}")
    start = time.perf_counter()
    with _reproducible(settings.seed, settings.threads):
        model = build(spec).train()
        batch = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))[: settings.batch_size]
        score = naswot_score(model, data.train_x[batch])
    return NaswotResult(score=score, seconds=time.perf_counter() - start, params=_num_params(model))


@dataclass(frozen=True)
class Evaluator:
    """An evaluator's settings type (every field has a default) and the function that runs it."""

    settings: type[TrainSettings] | type[NaswotSettings]
    run: Callable[[ModelSpec, Dataset, Any], EvalResult]


EVALUATORS: dict[str, Evaluator] = {
    "naswot": Evaluator(NaswotSettings, naswot),
    "train": Evaluator(TrainSettings, train),
}


def evaluate(spec: ModelSpec, evaluator: str, data: Dataset, settings: TrainSettings | NaswotSettings | None = None) -> EvalResult:
    """Run the evaluator named ``evaluator`` on ``spec``; ``settings`` None means its defaults."""
    if evaluator not in EVALUATORS:
        raise SpecError(f"unknown evaluator {evaluator!r}; known: {', '.join(sorted(EVALUATORS))}")
    entry = EVALUATORS[evaluator]
    if settings is None:
        settings = entry.settings()
    elif not isinstance(settings, entry.settings):
        raise TypeError(f"evaluator {evaluator!r} takes {entry.settings.__name__}, got {type(settings).__name__}")
    return entry.run(spec, data, settings)
