"""One search, start to end: the settings checked, the problem set up, the strategy's trials run
into the study, the outputs written.

Order of work: every setting is checked, the data loaded and the space's cheapest point timed
before any trial (a budget the space cannot meet stops here); then the strategy runs its trials
into an Optuna study (failed trials are recorded with their reason); then the best architecture,
the base network and the base width-scaled to the budget are re-measured (and, with an evaluator
that trains, trained again from fresh seeds) and written up. Ctrl-C stops after the running trial,
saving the study and what it holds so far.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial
from tqdm import tqdm

from archgen import SpecError
from archgen.checks import is_int, is_real
from archgen.checks import load_settings
from archgen.cli import import_user_modules
from archgen.cost.latency import LatencySettings, describe, fingerprint

from .data import DataSettings
from .evaluators import Evaluator, make_evaluator
from .outputs import PROG, write_outputs
from .problem import Problem
from .strategies import Strategy, make_strategy
from .study import open_study, section, study_pruner
from .trials import completed, finished


def make_problem(cfg: DictConfig, strategy: Strategy, evaluator: Evaluator) -> Problem:
    """Check the latency and data settings and load what the search needs (data, space, lookup table)."""
    latency = load_settings(LatencySettings, "latency", section(cfg, "latency"))
    data = load_settings(DataSettings, "data", section(cfg, "data")) if evaluator.needs_data else None
    return Problem(
        space=str(cfg.space), budget_ms=cfg.budget_ms, latency=latency, evaluator=evaluator, data=data,
        # a tabular evaluator's report ranks the best among the whole space by the lookup table's latency
        cache=cfg.get("cache"), lut=strategy.needs_table or evaluator.tabular, max_memory_gb=cfg.get("max_memory_gb"),
        seed=cfg.seed,
    )


def check_run_settings(cfg: DictConfig) -> None:
    """The run's own settings: n_trials, seed, fresh_seeds, timeout_min."""
    if not is_int(cfg.n_trials) or cfg.n_trials < 1:
        raise SpecError(f"n_trials must be an integer >= 1, got {cfg.n_trials!r}")
    if not is_int(cfg.seed) or cfg.seed < 0:
        raise SpecError(f"seed must be an integer >= 0 (the sampler's, and each trial's with its number), got {cfg.seed!r}")
    if not is_int(cfg.fresh_seeds) or cfg.fresh_seeds < 0:
        raise SpecError(f"fresh_seeds must be an integer >= 0, got {cfg.fresh_seeds!r}")
    timeout = cfg.get("timeout_min")
    if timeout is not None and not (is_real(timeout) and timeout > 0):
        raise SpecError(f"timeout_min must be a positive number of minutes or null, got {timeout!r}")


def check_budget(problem: Problem) -> dict[str, float]:
    """Where the budget falls in the space's latency range (cheapest point, base, dearest point).

    A budget below the cheapest point stops the run before any trial; one above the dearest
    point constrains nothing, which the run says in one warning and goes on."""
    reach = problem.latency_range()
    how = "predicted by the lookup table" if problem.predicts else "measured"
    where = f"{how}, on {describe(fingerprint(problem.latency))}"
    budget, name = problem.budget_ms, problem.space.name
    if reach["cheapest"] > budget:
        raise SpecError(
            f"budget_ms={budget:g} cannot be met: the smallest latency space {name} reaches is "
            f"{reach['cheapest']:.2f} ms ({where}, its cheapest point)"
        )
    lo, hi = reach["cheapest"], reach["dearest"]
    share = (budget - lo) / (hi - lo) if hi > lo else 1.0
    print(f"space {name}: latency {lo:.2f} ms (cheapest point) to {hi:.2f} ms (dearest), base "
          f"{problem.space.base.name} {reach['base']:.2f} ms ({where}); the budget {budget:g} ms is "
          f"{budget / reach['base']:.2f}x the base, {min(share, 1.0):.0%} of the way up the range")
    if budget >= hi:
        print(f"{PROG}: warning: budget_ms={budget:g} is above the dearest point of space {name} ({hi:.2f} ms): "
              "it constrains nothing, and the search only maximises the score", file=sys.stderr)
    return reach


class Progress:
    """A progress bar over the study's finished trials, with the best score so far."""

    def __init__(self, study: optuna.Study, n_trials: int, metric: str, enabled: bool) -> None:
        self.metric = metric
        self.best: tuple[float, float] | None = None
        self.bar = tqdm(total=n_trials, initial=min(finished(study), n_trials), desc="trials", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr)
        for t in completed(study):
            self._update_best(t)
        self._show()

    def _update_best(self, t: FrozenTrial) -> None:
        if t.state == optuna.trial.TrialState.COMPLETE and (self.best is None or t.user_attrs[self.metric] > self.best[0]):
            self.best = (t.user_attrs[self.metric], t.user_attrs["latency_ms"])

    def _show(self) -> None:
        if self.best is not None:
            self.bar.set_postfix_str(f"best {self.metric} {self.best[0]:.4f} at {self.best[1]:.2f} ms")

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._update_best(trial)
        self.bar.update(min(finished(study), self.bar.total) - self.bar.n)
        self._show()

    def close(self) -> None:
        self.bar.close()


class Interrupted(Exception):
    """Ctrl-C: the search stops after the trial that was running."""


class TimeUp(Exception):
    """``timeout_min`` has passed: the search stops after the trial that was running, and reports."""


class Deadline:
    """A trial callback that ends the search once ``minutes`` have passed since it was made
    (the trial running then finishes and is stored): searches compared at equal wall-clock time."""

    def __init__(self, minutes: float | None) -> None:
        self.end = None if minutes is None else time.monotonic() + 60 * minutes

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.end is not None and time.monotonic() >= self.end:
            raise TimeUp


class StopOnCtrlC:
    """While active, a first Ctrl-C lets the running trial finish and be stored, then stops the
    search (this object is also a trial callback); a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopOnCtrlC:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: stopping after the running trial (Ctrl-C again to stop at once)", file=sys.stderr)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.requested:
            raise Interrupted


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """One search; raises SpecError for bad input and KeyboardInterrupt after saving what it has."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_run_settings(cfg)
    import_user_modules(cfg.get("imports"))  # before the space: its base may use the user's block types
    strategy = make_strategy(str(cfg.strategy), section(cfg, str(cfg.strategy)))
    evaluator = make_evaluator(str(cfg.evaluator), section(cfg, str(cfg.evaluator)))
    pruner = study_pruner(cfg, strategy, evaluator.epochs_reported())
    problem = make_problem(cfg, strategy, evaluator)
    check_budget(problem)
    study, storage = open_study(cfg, problem, strategy, pruner, out_dir.name)
    print(f"study {study.study_name}: {finished(study)} of {cfg.n_trials} trials done")
    progress = Progress(study, cfg.n_trials, problem.metric, bool(cfg.progress))
    timeout = cfg.get("timeout_min")
    try:
        with StopOnCtrlC() as stop:
            strategy.run(problem, study, storage, cfg.n_trials, [progress, stop, Deadline(timeout)])
    except TimeUp:
        print(f"{PROG}: timeout_min={timeout:g} reached after {finished(study)} trials", file=sys.stderr)
    except (Interrupted, KeyboardInterrupt):
        progress.close()
        write_outputs(cfg, out_dir, problem, strategy, study, started, final=False)
        raise KeyboardInterrupt from None
    progress.close()
    summary = write_outputs(cfg, out_dir, problem, strategy, study, started, final=True)
    report = (out_dir / "report.md").read_text().split("\n\n")
    print(next((block for block in report if block.startswith("| network")), "no trial completed"))
    print(f"wrote {out_dir}")
    return summary
