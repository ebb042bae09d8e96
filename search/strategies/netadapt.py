"""NetAdapt (Yang et al. 2018, "NetAdapt: Platform-Aware Neural Network Adaptation for Mobile
Applications", Algorithm 1): shrink a network step by step until it meets the budget.

Start from the base network (its nearest point of the space). Iteration i must cut latency by
``step_i = step x base latency x decay ** i``. For every unit of the space (a block, for
per-block knobs; a stage, for per-stage knobs) NetAdapt proposes the one shrink that meets the
step according to the lookup table while removing the least: one knob moved to a cheaper value
(a smaller kernel, a smaller expansion or width, SE off, fewer layers or blocks). Each proposal
is briefly trained (an Optuna trial); the most accurate becomes the next network. The search
stops when the table says the network meets the budget, when no unit can make the step, or at
``max_iterations`` / ``n_trials``; a start network that meets the budget already is the answer
(evaluated, if no training started from it).

Each proposal starts from the current network's weights (``archgen.inherit``: a kept block
keeps its weights, a shrunk one the channels or kernel taps of the largest L1 norm) and is
fine-tuned for ``short_steps`` steps: NetAdapt's short-term fine-tune. The first network is
the base (its nearest point of the space) trained from scratch with ``train.*``. When the
search stops, the chosen network is fine-tuned for ``long_epochs`` epochs from its weights, the
paper's long-term fine-tune; its accuracy is the study's ``netadapt_final``. With
``inherit=false``, or an evaluator that does not train (``naswot``), each proposal is
evaluated from scratch instead.

Resuming: the accepted proposal of iteration i is stored on the study (user attribute
``netadapt_iter_<i>``); a proposal already evaluated in the study in the same iteration is not
evaluated again. The weights a resumed search needs (the accepted network's, and those of the
current iteration's proposals) are kept in ``weights_dir/<study name>``; older ones are deleted.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from archgen import SpecError, build
from archgen.checks import check_setting, is_int, is_real
from archgen.fileio import write_atomic
from archgen.inherit import inherit
from archgen.space import Space, parse_param

from ..evaluators import Trainer
from ..problem import Problem
from ..pruning import prunes, reporter
from ..space import suggest
from ..storage import Storage
from ..trials import Callback, ask, completed, finished, guarded, record, run_trial
from .base import Strategy, register_strategy

Params = dict[str, Any]
Weights = dict[str, torch.Tensor]
START = -1  # the iteration number of the start network's trial


@dataclass(frozen=True)
class Proposal:
    """One unit's shrink: the new point, what changed, and the table's latency for it."""

    params: Params
    unit: str  # "s3" (a stage) or "s3_b1" (a block)
    change: str  # "s3_b1_exp 6 -> 4"
    lut_ms: float


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(sorted(params.items())), sort_keys=True)


@register_strategy("netadapt")
@dataclass(frozen=True)
class NetAdapt(Strategy):
    """NetAdapt's progressive shrinking, guided by the latency lookup table."""

    step: float = 0.02  # first iteration's latency cut, as a fraction of the base network's latency
    decay: float = 0.96  # each next step is decay x the previous one
    max_iterations: int = 20
    inherit: bool = True  # proposals start from the current network's weights (the paper); false: from scratch
    short_steps: int = 100  # a proposal's short-term fine-tune, in optimiser steps
    long_epochs: int = 4  # the chosen network's long-term fine-tune at the end, in epochs; 0: none
    lr: float = 0.005  # peak learning rate of both fine-tunes (no warmup, cosine decay): the weights are trained
    weights_dir: str = "outputs/search/netadapt"  # where a resumable search keeps the weights it needs

    needs_table = True  # its proposals are chosen by the lookup table's latency
    retries_lost = False  # a resumed NetAdapt proposes a lost trial's point again in its iteration
    anytime = False  # n_trials stops it mid-iteration, where its answer is the last accepted network

    def __post_init__(self) -> None:
        check_setting("netadapt.step", self.step, is_real(self.step) and 0 < self.step < 1,
                      "a fraction in (0, 1) of the base latency")
        check_setting("netadapt.decay", self.decay, is_real(self.decay) and 0 < self.decay <= 1, "a number in (0, 1]")
        check_setting("netadapt.max_iterations", self.max_iterations, is_int(self.max_iterations) and self.max_iterations >= 1,
                      "an integer >= 1")
        check_setting("netadapt.inherit", self.inherit, isinstance(self.inherit, bool), "true or false")
        check_setting("netadapt.short_steps", self.short_steps, is_int(self.short_steps) and self.short_steps >= 1,
                      "an integer >= 1")
        check_setting("netadapt.long_epochs", self.long_epochs, is_int(self.long_epochs) and self.long_epochs >= 0,
                      "an integer >= 0")
        check_setting("netadapt.lr", self.lr, is_real(self.lr) and self.lr > 0, "a positive number")
        check_setting("netadapt.weights_dir", self.weights_dir, isinstance(self.weights_dir, str) and bool(self.weights_dir),
                      "a folder")

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        # every trial is enqueued with its proposal's parameters; the sampler never chooses
        return optuna.samplers.RandomSampler(seed=seed)

    # -- proposals ----------------------------------------------------------------------------
    def proposals(self, problem: Problem, current: Params, target_ms: float) -> list[Proposal]:
        """For every unit, the one-knob shrink that meets ``target_ms`` and removes the least latency."""
        by_unit: dict[str, list[str]] = {}
        for name in current:
            stage, block, _ = parse_param(name)
            by_unit.setdefault(f"s{stage}" if block is None else f"s{stage}_b{block}", []).append(name)
        choices = {**problem.space.per_stage, **problem.space.per_block}
        out = []
        for unit, names in by_unit.items():
            best: Proposal | None = None
            for name in names:
                knob = parse_param(name)[2]
                rank = problem.space.knob(knob).rank
                for value in choices[knob]:
                    if rank(value) >= rank(current[name]):
                        continue
                    sample = problem.space.sample(_replay(problem.space, {**current, name: value}))
                    lut = problem.lut_ms(sample.spec)
                    if lut <= target_ms and (best is None or lut > best.lut_ms):
                        best = Proposal(dict(sample.params), unit, f"{name} {current[name]} -> {value}", lut)
            if best is not None:
                out.append(best)
        return out

    # -- the loop -----------------------------------------------------------------------------
    def inherits(self, problem: Problem) -> bool:
        """Whether proposals start from the current network's weights (an evaluator that trains)."""
        return self.inherit and isinstance(problem.evaluator, Trainer)

    def run(self, problem: Problem, study: optuna.Study, storage: Storage, n_trials: int,
            callbacks: Sequence[Callback]) -> None:
        store = WeightStore(Path(self.weights_dir) / study.study_name)
        current = dict(problem.space.nearest_to_base().params)
        base_ms = problem.lut_ms(problem.space.apply(current))
        inherits = self.inherits(problem)
        start = self._start(problem, study, storage, current, store, n_trials, callbacks) if inherits else None
        if inherits and start is None:
            return
        weights: Weights | None = None

        # a proposal evaluated before (a resumed study) is not evaluated again; one that inherits,
        # only in its own iteration: from another parent it would be another network
        def key(iteration: int | None, params: Mapping[str, Any]) -> tuple[int | None, str]:
            return (iteration if inherits else None), _key(params)

        done = {key(t.user_attrs.get("iteration"), t.params): t for t in completed(study)}
        first = 0  # a resumed study: take up after the last decided iteration
        while f"netadapt_iter_{first}" in study.user_attrs:
            first += 1
        if first:
            accepted = study.user_attrs[f"netadapt_iter_{first - 1}"]
            current = dict(study.trials[accepted].params)
        if inherits:  # the network the next proposals inherit from: the last accepted, or the start
            weights = store.load(study.user_attrs[f"netadapt_iter_{first - 1}"] if first else start)
        for i in range(first, self.max_iterations):
            now_ms = problem.lut_ms(problem.space.apply(current))
            if now_ms <= problem.budget_ms:
                study.set_user_attr("netadapt_stop", f"iteration {i}: {now_ms:.2f} ms meets the budget")
                if i == 0 and start is None:  # the start network meets the budget already: it is the answer
                    self._start(problem, study, storage, current, store, n_trials, callbacks)
                break
            target = now_ms - self.step * base_ms * self.decay**i
            proposals = self.proposals(problem, current, target)
            if not proposals:
                study.set_user_attr("netadapt_stop", f"iteration {i}: no unit can cut {now_ms:.2f} ms to {target:.2f} ms")
                break
            results: list[FrozenTrial] = []
            for p in proposals:
                trial = done.get(key(i, p.params))
                if trial is None:
                    if finished(study) >= n_trials:
                        study.set_user_attr("netadapt_stop", f"iteration {i}: n_trials={n_trials} reached")
                        return
                    parent = None if weights is None else (current, weights)
                    trial = self._evaluate(problem, study, storage, p, i, callbacks, store, parent)
                    if trial is None:
                        continue
                    done[key(i, p.params)] = trial
                results.append(trial)
            if not results:
                study.set_user_attr("netadapt_stop", f"iteration {i}: every proposal failed")
                break
            winner = max(results, key=lambda t: t.value)
            study.set_user_attr(f"netadapt_iter_{i}", winner.number)
            current = dict(winner.params)
            if weights is not None:
                weights = store.load(winner.number)
                store.keep_only(winner.number)
        if weights is not None and self.long_epochs:
            self._long_finetune(problem, study, store)

    def _start(self, problem: Problem, study: optuna.Study, storage: Storage, params: Params, store: WeightStore,
               n_trials: int, callbacks: Sequence[Callback]) -> int | None:
        """The trial of the start network (the base, trained from scratch): found in the study, or run."""
        number = study.user_attrs.get("netadapt_start")
        if number is not None:
            return number
        if finished(study) >= n_trials:
            study.set_user_attr("netadapt_stop", f"before iteration 0: n_trials={n_trials} reached")
            return None
        lut = problem.lut_ms(problem.space.apply(params))
        trial = self._evaluate(problem, study, storage, Proposal(params, "-", "start: the base trained from scratch", lut),
                               START, callbacks, store, None)
        if trial is None:
            study.set_user_attr("netadapt_stop", "the start network's training failed")
            return None
        study.set_user_attr("netadapt_start", trial.number)
        return trial.number

    def _trainer(self, problem: Problem, initial: Weights | None) -> Trainer:
        """From scratch: the search's training. From inherited weights: the short-term fine-tune."""
        trainer = problem.evaluator
        assert isinstance(trainer, Trainer)
        return trainer if initial is None else trainer.with_schedule(steps=self.short_steps, lr=self.lr)

    def _evaluate(
        self, problem: Problem, study: optuna.Study, storage: Storage, p: Proposal, iteration: int,
        callbacks: Sequence[Callback], store: WeightStore, parent: tuple[Params, Weights] | None,
    ) -> FrozenTrial | None:
        """One proposal as a trial; ``parent``: the current network (its point and trained weights)
        the proposal inherits from, None to train it from scratch."""
        study.enqueue_trial(p.params, user_attrs={"iteration": iteration, "unit": p.unit, "change": p.change, "lut_ms": p.lut_ms})

        def objective(trial: optuna.Trial) -> float:
            sample = guarded(trial, lambda: suggest(trial, problem.space))
            report = reporter(trial, lambda accuracy: accuracy) if prunes(study) and problem.evaluator.per_epoch else None
            candidate = problem.candidate(sample.params, sample.spec, trial.number)
            if self.inherits(problem):
                start = None if parent is None else _inherited(problem, sample.params, parent, trial)
                outcome, weights = guarded(trial, lambda: problem.finetune(
                    candidate, self._trainer(problem, start), start, report))
                store.save(trial.number, weights)
            else:
                outcome = guarded(trial, lambda: problem.evaluate(candidate, report=report))
            record(trial, problem, outcome)
            return outcome.score

        frozen = run_trial(study, storage, ask(study, storage), objective)
        for callback in callbacks:
            callback(study, frozen)
        return frozen if frozen.state == TrialState.COMPLETE else None

    def _long_finetune(self, problem: Problem, study: optuna.Study, store: WeightStore) -> None:
        """The chosen network fine-tuned for ``long_epochs`` from its weights: the study's ``netadapt_final``."""
        best = self.best(problem, study)
        final = study.user_attrs.get("netadapt_final")
        if best is None or (final is not None and final["trial"] == best.number and final["epochs"] == self.long_epochs):
            return
        trainer = self._trainer(problem, None).with_schedule(epochs=self.long_epochs, lr=self.lr)
        outcome, weights = problem.finetune(problem.candidate(best.params), trainer, store.load(best.number))
        path = store.save("final", weights)
        study.set_user_attr("netadapt_final", {"trial": best.number, "epochs": self.long_epochs, "accuracy": outcome.score,
                                               "seconds": outcome.seconds, "weights": str(path.resolve())})

    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The last accepted proposal; before the first iteration is decided (n_trials stopped it),
        the start network, else the most accurate proposal so far."""
        accepted = {int(k.rsplit("_", 1)[1]): v for k, v in study.user_attrs.items() if k.startswith("netadapt_iter_")}
        if accepted:
            return study.trials[accepted[max(accepted)]]
        if "netadapt_start" in study.user_attrs:
            return study.trials[study.user_attrs["netadapt_start"]]
        return max(completed(study), key=lambda t: t.value, default=None)

    def notes(self, problem: Problem, study: optuna.Study) -> list[str]:
        """Why it stopped, and the chosen network's long-term fine-tune."""
        notes = [study.user_attrs["netadapt_stop"]] if "netadapt_stop" in study.user_attrs else []
        final = study.user_attrs.get("netadapt_final")
        if final is not None:
            notes.append(f"NetAdapt's long-term fine-tune: trial {final['trial']} trained {final['epochs']} more epochs "
                         f"from its weights reaches {problem.metric} {final['accuracy']:.4f} (weights: best.pt)")
        return notes

    def summary(self, problem: Problem, study: optuna.Study) -> dict[str, Any]:
        return {"netadapt_final_score": (study.user_attrs.get("netadapt_final") or {}).get("accuracy")}

    def write(self, study: optuna.Study, out_dir: Path) -> None:
        """``best.pt``: the chosen network's weights after the long-term fine-tune."""
        final = study.user_attrs.get("netadapt_final")
        if final is not None and Path(final["weights"]).is_file():
            write_atomic(out_dir / "best.pt", Path(final["weights"]).read_bytes())


def _replay(space: Space, params: Mapping[str, Any]) -> Callable[[str, str, list[Any]], Any]:
    """A chooser that takes ``params``' values, and for a parameter it lacks (a block the point
    did not have before) the cheapest value."""
    return lambda name, knob, values: params[name] if name in params else space.knob(knob).cheapest(values)


def _inherited(problem: Problem, params: Mapping[str, Any], parent: tuple[Params, Weights], trial: optuna.Trial) -> Weights:
    """A proposal's proxy weights taken from the current network's (``archgen.inherit``); what
    each block got is on the trial (``inherited``: kept / sliced / fresh block counts)."""
    parent_params, parent_weights = parent
    parent_model = build(problem.proxy.apply(parent_params))
    parent_model.load_state_dict(parent_weights)
    got = inherit(parent_model, build(problem.proxy.apply(params)))
    trial.set_user_attr("inherited", ", ".join(f"{got.count(h)} {h}" for h in ("kept", "sliced", "fresh")))
    return got.state_dict


class WeightStore:
    """Trained proxy weights of a NetAdapt search, one file per trial, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: int | str) -> Path:
        return self.folder / (f"trial_{name}.pt" if isinstance(name, int) else f"{name}.pt")

    def save(self, name: int | str, weights: Weights) -> Path:
        buf = io.BytesIO()
        torch.save(weights, buf)
        path = self.path(name)
        write_atomic(path, buf.getvalue())
        return path

    def load(self, name: int | str) -> Weights:
        path = self.path(name)
        if not path.is_file():
            raise SpecError(f"NetAdapt needs the weights of trial {name} to go on, and {path} is missing; "
                            "start a new study, or point netadapt.weights_dir at the folder that holds them")
        return torch.load(path, map_location="cpu", weights_only=True)

    def keep_only(self, number: int) -> None:
        """Delete every trial's weights but ``number``'s (the accepted network's)."""
        for path in self.folder.glob("trial_*.pt"):
            if path != self.path(number):
                path.unlink(missing_ok=True)
