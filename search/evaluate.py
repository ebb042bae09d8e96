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

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from archgen import ModelSpec, SpecError, build

from .data import Dataset, check_setting, is_int, is_real
from .device import DEVICE_CHOICES, PRECISIONS, Runtime, is_device_name

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
    # this many optimiser steps instead of `epochs` epochs (NetAdapt's short-term fine-tuning of
    # a proposal, Yang et al. 2018 Sec. 3); the schedule then spans them
    steps: int | None = None
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
    # where and how (search.device): auto (CUDA when present), cpu, cuda or cuda:<index>
    device: str = "auto"
    precision: str = "auto"  # auto (CUDA: bf16, else fp16 with a grad scaler; CPU: fp32), fp32, bf16, fp16
    # NHWC weights and batches: cuDNN's tensor-core kernels want them, and on a 2-core EPYC they
    # train mbv3_large at 32x32 1.08-1.16x faster, the same training within rounding (search.throughput)
    channels_last: bool = True
    # torch.compile the model: 1.25-1.33x the steps/s on the CPU, but each new architecture compiles
    # for 10 s or more, which a trial of a minute does not win back (python -m search.throughput)
    compile: bool = False
    deterministic: bool = False  # CUDA: deterministic kernels, no cudnn.benchmark (the CPU's always are)
    # torch CPU threads. None: every core this process may run on (all of them for one worker;
    # search.parallel pins each worker to its share). A fixed count repeats results bit for bit
    # across machines; the same count on the same machine always does
    threads: int | None = None

    def __post_init__(self) -> None:
        check_setting("train.epochs", self.epochs, is_int(self.epochs) and self.epochs >= 1, "a positive integer")
        check_setting("train.steps", self.steps, self.steps is None or (is_int(self.steps) and self.steps >= 1), "a positive integer or null")
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
        check_setting("train.device", self.device, is_device_name(self.device), DEVICE_CHOICES)
        check_setting("train.precision", self.precision, self.precision in PRECISIONS, f"one of: {', '.join(PRECISIONS)}")
        check_setting("train.channels_last", self.channels_last, isinstance(self.channels_last, bool), "true or false")
        check_setting("train.compile", self.compile, isinstance(self.compile, bool), "true or false")
        check_setting("train.deterministic", self.deterministic, isinstance(self.deterministic, bool), "true or false")

    def runtime(self) -> Runtime:
        """These settings resolved on this machine; CUDA asked for where there is none is a ``SpecError``."""
        return Runtime.resolve("train", self.device, self.precision, self.channels_last, self.threads, self.deterministic)

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
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:<index>
    threads: int | None = None  # torch CPU threads, as for training; None: the cores this process may run on

    def __post_init__(self) -> None:
        check_setting("naswot.batch_size", self.batch_size, is_int(self.batch_size) and self.batch_size >= 2, "an integer >= 2")
        check_setting("naswot.seed", self.seed, is_int(self.seed), "an integer")
        check_setting("naswot.device", self.device, is_device_name(self.device), DEVICE_CHOICES)
        _check_threads("naswot.threads", self.threads)

    def runtime(self) -> Runtime:
        # fp32 and the default memory format: the score is a determinant of 0/1 codes, and the
        # cost is one forward pass, which mixed precision would not shorten by much
        return Runtime.resolve("naswot", self.device, "fp32", False, self.threads, deterministic=True)


@dataclass(frozen=True)
class TrainResult:
    accuracy: float  # top-1 on the validation split, in [0, 1]; the mean over the repeats
    loss: float  # mean cross-entropy on the validation split (without label smoothing); the mean over the repeats
    epochs: int
    seconds: float  # wall time of the whole evaluation: build, training, BN statistics, validation, every repeat
    params: int
    accuracies: tuple[float, ...]  # each repeat's, in seed order
    images_per_s: float = math.nan  # training throughput: images through the training steps per second of them
    runtime: str = ""  # where it ran: "cpu, 2 threads, fp32" (Runtime.describe)
    # the last repeat's trained weights (on the CPU), when asked for (NetAdapt carries them on)
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

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
# called after each epoch but the last with (epochs trained so far, over the repeats; validation
# top-1); it may raise to stop the training, as a pruned Optuna trial does
Report = Callable[[int, float], None]


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


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor per step: linear warmup to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def optimizer_for(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9, or AdamW, at the peak learning rate and weight decay of ``settings``."""
    lr, weight_decay = settings.lr, settings.weight_decay
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) shifted by a random crop of its zero-padded self (pad
    ``H // 8``; zero is the mean of normalised data) and flipped left-right with probability 1/2.
    ``generator`` is a CPU generator whatever ``x``'s device, so a seed draws the same crops everywhere."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=generator) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    index = (torch.arange(n)[:, None, None].to(x.device), rows.to(x.device), cols.to(x.device))
    crops = padded.permute(0, 2, 3, 1)[index].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], crops.flip(3), crops).contiguous()


@torch.no_grad()
def _recalibrate_bn(model: nn.Module, data: Dataset, batch_size: int, runtime: Runtime) -> None:
    """Replace every BatchNorm's running statistics by their mean over the full batches of the
    training images; the model is left in eval mode, with its BatchNorms' momentum as it was."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average, every batch weighs the same
        m.train()
    with runtime.autocast():
        for x, _ in data.batches("train", data.sequential("train", batch_size, full=True), runtime.pin):
            model(runtime.inputs(x))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def _validate(model: nn.Module, data: Dataset, batch_size: int, runtime: Runtime) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) on the validation split."""
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=runtime.device)
    correct = torch.zeros((), dtype=torch.int64, device=runtime.device)
    with runtime.autocast():
        for x, y in data.batches("val", data.sequential("val", batch_size), runtime.pin):
            logits = model(runtime.inputs(x)).float()
            loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
    return loss.item() / len(data.val_y), correct.item() / len(data.val_y)


def train(spec: ModelSpec, data: Dataset, settings: TrainSettings = TrainSettings(), report: Report | None = None,
          initial: Mapping[str, torch.Tensor] | None = None, keep_weights: bool = False) -> TrainResult:
    """Train ``spec`` on ``data.train_*`` and measure top-1 on ``data.val_*``, ``settings.repeats``
    times from consecutive seeds, and average.

    ``report``: called after every epoch but the last (the pruning of a search); the extra
    validations cost time, but change nothing else: the weights, and the result, are the same.
    ``initial``: weights to start from instead of the seed's (NetAdapt's fine-tuning, a state dict
    of ``spec``'s network). ``keep_weights``: return the last repeat's trained weights. The same
    spec, data and settings give bit-for-bit the same result on the same machine
    (``search.device`` says when a GPU does).
    """
    check_fits(spec, data)
    n, batch_size = len(data.train_y), settings.batch_size
    check_setting("train.batch_size", batch_size, n // batch_size > 0, f"at most the {n} training samples of data {data.name}")
    runtime = settings.runtime()
    on_device = data.to(runtime.device)
    start = time.perf_counter()
    runs = [_train_once(spec, on_device, settings, runtime, seed, k, report, initial) for k, seed in enumerate(settings.seeds)]
    losses, accuracies, params, images, seconds, weights = zip(*runs)
    return TrainResult(
        accuracy=statistics.fmean(accuracies),
        loss=statistics.fmean(losses),
        epochs=math.ceil((settings.steps or settings.epochs * (n // batch_size)) / (n // batch_size)),
        seconds=time.perf_counter() - start,
        params=params[0],
        accuracies=tuple(accuracies),
        images_per_s=sum(images) / sum(seconds) if sum(seconds) > 0 else math.nan,
        runtime=runtime.describe(),
        weights={k: v.detach().cpu().clone() for k, v in weights[-1].items()} if keep_weights else None,
    )


def _train_once(spec: ModelSpec, data: Dataset, settings: TrainSettings, runtime: Runtime, seed: int, repeat: int,
                report: Report | None, initial: Mapping[str, torch.Tensor] | None,
                ) -> tuple[float, float, int, int, float, dict[str, torch.Tensor]]:
    """One training from ``seed`` (the ``repeat``-th): validation loss, top-1, parameters, images
    trained on, the seconds the training steps took, and the trained weights."""
    n, batch_size = len(data.train_y), settings.batch_size
    steps_per_epoch = n // batch_size
    total_steps = settings.steps or settings.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    # a non-finite loss is checked every step on the CPU; on a GPU each check waits for the
    # device, so it is checked every few dozen steps, and at the end of each epoch
    check_every = 1 if runtime.device.type == "cpu" else 50
    with runtime.seeded(seed):
        model = runtime.model(build(spec))
        if initial is not None:
            model.load_state_dict(initial)
        step_model = torch.compile(model) if settings.compile else model
        optimizer = optimizer_for(model, settings)
        warmup_steps = round(settings.warmup_epochs * steps_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(warmup_steps, total_steps))
        scaler = runtime.scaler()
        order = torch.Generator().manual_seed(seed)  # on the CPU: the same batches and crops on every device
        finite = torch.ones((), dtype=torch.bool, device=runtime.device)
        train_seconds = 0.0
        for epoch in range(epochs):
            model.train()
            began = time.perf_counter()
            batches = torch.randperm(n, generator=order)[: steps_per_epoch * batch_size].view(steps_per_epoch, batch_size)
            batches = batches[: total_steps - epoch * steps_per_epoch]  # the last epoch of a step count may be partial
            for step, (x, y) in enumerate(data.batches("train", batches, runtime.pin)):
                x = runtime.inputs(augment(x, order) if settings.augment else x)
                with runtime.autocast():
                    logits = step_model(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=settings.label_smoothing)
                finite &= torch.isfinite(loss)
                if (step + 1) % check_every == 0 or step + 1 == len(batches):
                    if not finite.item():
                        what = f"{loss.item()} at epoch {epoch + 1}, step" if check_every == 1 else f"not finite at epoch {epoch + 1}, by step"
                        raise TrialFailed(f"{spec.name}: training loss is {what} {step + 1} (seed {seed})")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
            if runtime.device.type == "cuda":
                torch.cuda.synchronize(runtime.device)
            train_seconds += time.perf_counter() - began
            last = repeat == settings.repeats - 1 and epoch == epochs - 1
            if report is not None and not last:
                _recalibrate_bn(model, data, batch_size, runtime)
                report(repeat * epochs + epoch + 1, _validate(model, data, batch_size, runtime)[1])
        _recalibrate_bn(model, data, batch_size, runtime)
        val_loss, accuracy = _validate(model, data, batch_size, runtime)
    if not math.isfinite(val_loss):
        raise TrialFailed(f"{spec.name}: validation loss is {val_loss} after training (seed {seed})")
    return val_loss, accuracy, _num_params(model), total_steps * batch_size, train_seconds, model.state_dict()


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
    n = len(data.train_y)
    check_setting("naswot.batch_size", settings.batch_size, settings.batch_size <= n, f"at most the {n} training samples of data {data.name}")
    runtime = settings.runtime()
    start = time.perf_counter()
    with runtime.seeded(settings.seed):
        model = runtime.model(build(spec)).train()
        batch = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))[: settings.batch_size]
        images, _ = next(data.batches("train", [batch]))
        score = naswot_score(model, runtime.inputs(images))
    return NaswotResult(score=score, seconds=time.perf_counter() - start, params=_num_params(model))


@dataclass(frozen=True)
class Evaluator:
    """An evaluator's settings type (every field has a default) and the function that runs it;
    ``epochs``: whether it trains epoch by epoch, so that a pruner can stop it after one."""

    settings: type[TrainSettings] | type[NaswotSettings]
    run: Callable[..., EvalResult]
    epochs: bool


EVALUATORS: dict[str, Evaluator] = {
    "naswot": Evaluator(NaswotSettings, naswot, epochs=False),
    "train": Evaluator(TrainSettings, train, epochs=True),
}


def evaluate(spec: ModelSpec, evaluator: str, data: Dataset, settings: TrainSettings | NaswotSettings | None = None,
             report: Report | None = None, initial: Mapping[str, torch.Tensor] | None = None,
             keep_weights: bool = False) -> EvalResult:
    """Run the evaluator named ``evaluator`` on ``spec``; ``settings`` None means its defaults.
    ``report``, ``initial`` and ``keep_weights``: ``train``'s (per-epoch reports for a pruner;
    weights to start from; the trained weights returned); an evaluator that does not train
    takes none of them."""
    if evaluator not in EVALUATORS:
        raise SpecError(f"unknown evaluator {evaluator!r}; known: {', '.join(sorted(EVALUATORS))}")
    entry = EVALUATORS[evaluator]
    if settings is None:
        settings = entry.settings()
    elif not isinstance(settings, entry.settings):
        raise TypeError(f"evaluator {evaluator!r} takes {entry.settings.__name__}, got {type(settings).__name__}")
    if not entry.epochs:
        if initial is not None or keep_weights:
            raise SpecError(f"evaluator {evaluator} does not train, so it cannot start from inherited weights")
        return entry.run(spec, data, settings)
    return entry.run(spec, data, settings, report=report, initial=initial, keep_weights=keep_weights)
