"""NetAdapt (Yang et al. 2018, "NetAdapt: Platform-Aware Neural Network Adaptation for Mobile
Applications", Algorithm 1): shrink a network step by step until it meets the budget.

Start from the base network (its nearest point of the space). Iteration i must cut latency by
``step_i = step x base latency x decay ** i``. For every unit of the space (a block, for
per-block knobs; a stage, for per-stage knobs) NetAdapt proposes the one shrink that meets the
step according to the lookup table while removing the least: one knob moved to a cheaper value
(a smaller kernel, a smaller expansion or width, SE off, fewer layers or blocks). Each proposal
is briefly trained (an Optuna trial); the most accurate becomes the next network. The search
stops when the table says the network meets the budget, when no unit can make the step, or at
``max_iterations`` / ``n_trials``.

NetAdapt fine-tunes each proposal from the previous network's weights; archgen's proposals are
points of a space whose widths and kernels change, so each is trained from scratch with the
search's evaluator (its short training is the "short-term fine-tune").

Resuming: the accepted proposal of iteration i is stored on the study (user attribute
``netadapt_iter_<i>``), and a proposal already evaluated in the study is not evaluated again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from archgen import SpecError
from archgen.space import KNOBS, parse_param

from ..problem import Problem
from ..space import suggest
from .common import TRIAL_ERRORS, completed, finished, guarded, record

Callback = Callable[[optuna.Study, FrozenTrial], None]
Params = dict[str, Any]


@dataclass(frozen=True)
class Proposal:
    """One unit's shrink: the new point, what changed, and the table's latency for it."""

    params: Params
    unit: str  # "s3" (a stage) or "s3_b1" (a block)
    change: str  # "s3_b1_exp 6 -> 4"
    lut_ms: float


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(sorted(params.items())), sort_keys=True)


@dataclass(frozen=True)
class NetAdapt:
    """NetAdapt's progressive shrinking, guided by the latency lookup table."""

    step: float = 0.02  # first iteration's latency cut, as a fraction of the base network's latency
    decay: float = 0.96  # each next step is decay x the previous one
    max_iterations: int = 20

    name = "netadapt"
    directions = ("maximize",)

    def __post_init__(self) -> None:
        if not (isinstance(self.step, (int, float)) and 0 < self.step < 1):
            raise SpecError(f"netadapt.step must be a fraction in (0, 1) of the base latency, got {self.step!r}")
        if not (isinstance(self.decay, (int, float)) and 0 < self.decay <= 1):
            raise SpecError(f"netadapt.decay must be a number in (0, 1], got {self.decay!r}")
        if not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise SpecError(f"netadapt.max_iterations must be an integer >= 1, got {self.max_iterations!r}")

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
                rank = KNOBS[knob].rank
                for value in choices[knob]:
                    if rank(value) >= rank(current[name]):
                        continue
                    sample = problem.space.sample(_replay({**current, name: value}))
                    lut = problem.lut_ms(sample.spec)
                    if lut <= target_ms and (best is None or lut > best.lut_ms):
                        best = Proposal(dict(sample.params), unit, f"{name} {current[name]} -> {value}", lut)
            if best is not None:
                out.append(best)
        return out

    # -- the loop -----------------------------------------------------------------------------
    def run(self, problem: Problem, study: optuna.Study, n_trials: int, callbacks: Sequence[Callback]) -> None:
        current = dict(problem.space.nearest_to_base().params)
        base_ms = problem.lut_ms(problem.space.apply(current))
        done = {_key(t.params): t for t in completed(study)}
        for i in range(self.max_iterations):
            accepted = study.user_attrs.get(f"netadapt_iter_{i}")
            if accepted is not None:  # a resumed study: replay what was decided
                current = dict(study.trials[accepted].params)
                continue
            now_ms = problem.lut_ms(problem.space.apply(current))
            if now_ms <= problem.budget_ms:
                study.set_user_attr("netadapt_stop", f"iteration {i}: {now_ms:.2f} ms meets the budget")
                return
            target = now_ms - self.step * base_ms * self.decay**i
            proposals = self.proposals(problem, current, target)
            if not proposals:
                study.set_user_attr("netadapt_stop", f"iteration {i}: no unit can cut {now_ms:.2f} ms to {target:.2f} ms")
                return
            results: list[tuple[float, FrozenTrial]] = []
            for p in proposals:
                trial = done.get(_key(p.params))
                if trial is None:
                    if finished(study) >= n_trials:
                        study.set_user_attr("netadapt_stop", f"iteration {i}: n_trials={n_trials} reached")
                        return
                    trial = self._evaluate(problem, study, p, i, callbacks)
                    if trial is None:
                        continue
                    done[_key(p.params)] = trial
                results.append((trial.value, trial))
            if not results:
                study.set_user_attr("netadapt_stop", f"iteration {i}: every proposal failed")
                return
            winner = max(results, key=lambda r: r[0])[1]
            study.set_user_attr(f"netadapt_iter_{i}", winner.number)
            current = dict(winner.params)

    def _evaluate(
        self, problem: Problem, study: optuna.Study, p: Proposal, iteration: int, callbacks: Sequence[Callback]
    ) -> FrozenTrial | None:
        study.enqueue_trial(p.params, user_attrs={"iteration": iteration, "unit": p.unit, "change": p.change, "lut_ms": p.lut_ms})
        trial = study.ask()
        try:
            sample = guarded(trial, lambda: suggest(trial, problem.space))
            outcome = guarded(trial, lambda: problem.evaluate(sample.params, sample.spec))
        except TRIAL_ERRORS:
            frozen = study.tell(trial, state=TrialState.FAIL)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            record(trial, problem, outcome)
            frozen = study.tell(trial, outcome.score)
        for callback in callbacks:
            callback(study, frozen)
        return frozen if frozen.state == TrialState.COMPLETE else None

    def best(self, problem: Problem, study: optuna.Study) -> FrozenTrial | None:
        """The last accepted proposal; before the first iteration is decided (n_trials stopped it),
        the most accurate proposal so far."""
        accepted = {int(k.rsplit("_", 1)[1]): v for k, v in study.user_attrs.items() if k.startswith("netadapt_iter_")}
        if accepted:
            return study.trials[accepted[max(accepted)]]
        return max(completed(study), key=lambda t: t.value, default=None)


def _replay(params: Mapping[str, Any]) -> Callable[[str, str, list[Any]], Any]:
    """A chooser that takes ``params``' values, and for a parameter it lacks (a block the point
    did not have before) the cheapest value."""
    return lambda name, knob, values: params[name] if name in params else KNOBS[knob].cheapest(values)
