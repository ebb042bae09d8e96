"""``evaluator=train``: a short training from scratch, then top-1 on the validation split.

The reduced-training proxy of NAS (MnasNet trained each sample 5 epochs on a proxy task). Before
validating, the BatchNorm statistics are recomputed with the final weights ("precise BN", Wu &
Johnson, "Rethinking 'Batch' in BatchNorm", 2021): a few hundred steps leave running averages
with MobileNetV3's momentum of 0.01 close to their initial values, and the validation at chance.

``train(spec, data, settings)`` is the training itself (``search.proxy`` and ``search.benchmark``
run it in worker processes); ``Train`` is the evaluator around it. A loss that is not finite
raises ``TrialFailed``; a spec that does not fit the data, or a bad setting, ``archgen.SpecError``.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from archgen import ModelSpec, build
from archgen.checks import check_setting, is_int, is_real

from ..data import Dataset
from ..device import DEVICE_CHOICES, PRECISIONS, Runtime, check_threads, is_device_name
from .base import Candidate, Footprint, Report, Score, Trainer, TrialFailed, check_batch, check_fits, register_evaluator


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
        check_threads("train.threads", self.threads)
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
    check_batch("train.batch_size", settings.batch_size, data)
    n, batch_size = len(data.train_y), settings.batch_size
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



@register_evaluator("train")
class Train(Trainer):
    """A short training of the proxy network from scratch; the score is its validation top-1."""

    Settings = TrainSettings
    metric = "accuracy"
    per_epoch = True
    # where and how fast it trains, not what: workers on other hardware may share one study
    local_settings = frozenset({"device", "precision", "channels_last", "compile", "threads", "deterministic"})

    def __init__(self, settings: TrainSettings | None = None) -> None:
        super().__init__(settings)
        self._runtime = self.settings.runtime()  # train.device=cuda without a GPU stops here, before any trial

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def footprint(self) -> Footprint:
        return Footprint(self.settings.batch_size, learns=True, device=str(self._runtime.device))

    def epochs_reported(self) -> int:
        return self.settings.epochs * self.settings.repeats

    def check(self, data: Dataset | None) -> None:
        if data is not None:
            check_batch("train.batch_size", self.settings.batch_size, data)

    def cost(self, data: Dataset | None) -> str:
        s = self.settings
        length = f"{s.steps} steps" if s.steps else f"{s.epochs} epoch{'s' if s.epochs != 1 else ''}"
        images = f" on {len(data.train_y)} images" if data is not None else ""
        seeds = f", the mean of {s.repeats} seeds" if s.repeats > 1 else ""
        return f"a training of {length}{images} (batch {s.batch_size}){seeds}, then a validation"

    def evaluate(self, candidate: Candidate, data: Dataset | None, report: Report | None = None) -> Score:
        assert candidate.proxy is not None and data is not None
        return _score(train(candidate.proxy, data, self.settings, report=report))

    def fresh(self, seeds: int) -> Train:
        return Train(self.settings.after(seeds))

    @property
    def seeds_label(self) -> str:
        return self.settings.seeds_label

    def finetune(self, network: ModelSpec, data: Dataset, initial: Mapping[str, torch.Tensor] | None,
                 report: Report | None = None) -> tuple[Score, dict[str, torch.Tensor]]:
        result = train(network, data, self.settings, report=report, initial=initial, keep_weights=True)
        assert result.weights is not None
        return _score(result), result.weights

    def with_schedule(self, *, steps: int | None = None, epochs: int | None = None, lr: float | None = None) -> Train:
        changes = {"steps": steps, "warmup_epochs": 0, "repeats": 1, **({"epochs": epochs} if epochs else {}),
                   **({"lr": lr} if lr is not None else {})}
        return Train(replace(self.settings, **changes))


def _score(result: TrainResult) -> Score:
    return Score(result.accuracy, result.seconds, result.accuracies, {"images_per_s": result.images_per_s})
