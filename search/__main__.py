"""``python -m search``: the best architecture of a space within a latency budget, and the evidence.

    python -m search budget_ms=30
    python -m search strategy=pareto latency=lut evaluator=naswot n_trials=200
    python -m search study_name=my-study storage=sqlite:///studies.db     # run again to resume
    python -m search -m budget_ms=10,20,30

Order of work: every setting is checked, the data loaded and the space's cheapest point
timed before any trial (a budget the space cannot meet stops here, exit 2); then the
strategy runs its trials into an Optuna study (failed trials are recorded with their reason);
then the best architecture, the base network and the base width-scaled to the budget are
re-measured (and, with ``evaluator=train``, trained again from fresh seeds) and written up.
Ctrl-C stops after saving the study and what it holds so far (exit 130).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from archgen import ModelSpec, SpecError, build, count
from archgen.cli import (
    check_choices, import_user_modules, load_settings, path_component, register_path_component, run_app,
)
from archgen.cost.latency import Latency, LatencySettings, describe, fingerprint, measure_side_by_side
from archgen.fileio import write_atomic, write_json
from archgen.table_form import dump as table_dump
from archgen.zoo import CONF_DIR

from .data import DataSettings, is_int, is_real, labels_digest
from .evaluate import EVALUATORS, TrainSettings
from .problem import Problem
from .pruning import PRUNERS, PruningSettings, check_pruner, make_pruner
from .storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL, Storage, open_storage
from .report import SUMMARY, Entry, plot_history, plot_intermediate, plot_pareto, report_md, write_trials
from .strategies import STRATEGIES, make_strategy
from .strategies.common import completed, finished, finished_of, uncounted
from .strategies.sampled import pareto_front

PROG = "search"
WIDTHS = tuple(round(0.1 + 0.05 * i, 2) for i in range(59))  # 0.1 ... 3.0: the width-scaled baseline's grid


def _section(cfg: DictConfig, key: str) -> dict[str, Any]:
    return OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else {}  # type: ignore[return-value]


def make_problem(cfg: DictConfig, strategy_name: str) -> Problem:
    """Check every setting and load what the search needs (data, spaces, latency table)."""
    latency = load_settings(LatencySettings, "latency", _section(cfg, "latency"))
    if cfg.evaluator not in EVALUATORS:
        raise SpecError(f"unknown evaluator {cfg.evaluator!r}; known: {', '.join(sorted(EVALUATORS))}")
    evaluator_settings = load_settings(EVALUATORS[cfg.evaluator].settings, cfg.evaluator, _section(cfg, cfg.evaluator))
    data = load_settings(DataSettings, "data", _section(cfg, "data"))
    return Problem(
        space=str(cfg.space), budget_ms=cfg.budget_ms, latency=latency, evaluator=cfg.evaluator,
        evaluator_settings=evaluator_settings, data=data, cache=cfg.get("cache"), lut=strategy_name == "netadapt",
        max_memory_gb=cfg.get("max_memory_gb"),
    )


def check_budget(problem: Problem) -> dict[str, float]:
    """Where the budget falls in the space's latency range (cheapest point, base, dearest point).

    A budget below the cheapest point stops the run before any trial; one above the dearest
    point constrains nothing, which the run says in one warning and goes on."""
    reach = problem.latency_range()
    how = "predicted by the lookup table" if problem.latency.source == "lut" else "measured"
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


def make_study_pruner(cfg: DictConfig, problem: Problem, strategy_name: str) -> optuna.pruners.BasePruner:
    """The pruner named by ``pruner=``, set up by ``pruning.*`` (none where the config has none)."""
    name = str(cfg.get("pruner") or "none")
    check_pruner(name, strategy_name)
    settings = load_settings(PruningSettings, "pruning", _section(cfg, "pruning"))
    train = problem.evaluator_settings
    max_epochs = train.epochs * train.repeats if isinstance(train, TrainSettings) else 1
    return make_pruner(name, settings, max_epochs)


# what changes how a trial runs but not what its figures mean: workers on other hardware, or with
# other paths, may join one study
RUNTIME_SETTINGS = frozenset({"device", "precision", "channels_last", "compile", "threads", "deterministic"})
LOCAL_DATA_SETTINGS = frozenset({"root", "download", "in_memory", "memory_limit_gb", "workers"})
IDENTITY_FORMAT = 3  # 3: trials carry heartbeats (a study of format 2 may hold a running trial nothing fails)


def file_digest(path: str | Path) -> str:
    """A file's content, as a short hash."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def study_identity(cfg: DictConfig, problem: Problem, strategy: Any) -> dict[str, Any]:
    """Every setting that changes what a trial's value means, flat (``train.epochs``): the space
    (by name and content, never by path), the budget, the strategy and its reward weights, the
    evaluator's settings, the data's settings and labels, the latency protocol and the seed."""
    def flat(prefix: str, values: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        return {f"{prefix}.{k}": v for k, v in values.items() if k not in skip and not k.endswith("_dir")}

    evaluator = dataclasses.asdict(problem.evaluator_settings)
    # a target's table by its content, not by where this worker keeps it
    table = {"table": file_digest(problem.latency.table)} if problem.latency.table is not None else {}
    identity = {
        "format": IDENTITY_FORMAT,
        "space": problem.space.name, "space.digest": problem.space.digest,
        "budget_ms": problem.budget_ms,
        "strategy": strategy.name, **flat(strategy.name, _section(cfg, strategy.name)),
        "evaluator": problem.evaluator, **flat(problem.evaluator, evaluator, RUNTIME_SETTINGS),
        **flat("data", dataclasses.asdict(problem.data_settings), LOCAL_DATA_SETTINGS),
        "data.labels": labels_digest(problem.data),
        **flat("latency", {**dataclasses.asdict(problem.latency), **table}),
        "seed": cfg.seed,
    }
    return json.loads(json.dumps(identity, default=str))  # as the storage gives it back: lists, not tuples


def study_storage(cfg: DictConfig, strategy: Any) -> Storage:
    """``storage=`` (default: outputs/search/studies.db) with the heartbeat settings. NetAdapt's
    lost trial is not retried: a resumed NetAdapt proposes it again in its iteration."""
    return open_storage(cfg.storage or f"sqlite:///{Path('outputs/search/studies.db').resolve()}",
                        cfg.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL), cfg.get("grace_period", DEFAULT_GRACE_PERIOD),
                        retry_lost=strategy.name != "netadapt")


def open_study(cfg: DictConfig, problem: Problem, strategy: Any, out_dir: Path) -> tuple[optuna.Study, Storage]:
    """Create the study, or load it to resume; a study made with other settings is refused."""
    storage = study_storage(cfg, strategy)
    pruner = make_study_pruner(cfg, problem, strategy.name)
    name = cfg.study_name or f"{problem.space.name}-{strategy.name}-{problem.budget_ms:g}ms-{out_dir.name}"
    identity = study_identity(cfg, problem, strategy)
    try:
        study = optuna.create_study(
            study_name=name, storage=storage.backend, sampler=strategy.make_sampler(cfg.seed), pruner=pruner,
            directions=list(strategy.directions), load_if_exists=True,
        )
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it a moment ago
        study = optuna.load_study(study_name=name, storage=storage.backend, sampler=strategy.make_sampler(cfg.seed),
                                  pruner=pruner)
    recorded = study.user_attrs.get("identity")
    if recorded is None:
        study.set_user_attr("identity", identity)
    elif recorded.get("format") != IDENTITY_FORMAT:
        raise SpecError(f"study {name!r} was created by an earlier archgen, which recorded too few of its settings "
                        "to check that a trial means the same now; choose another study_name")
    elif recorded != identity:
        changed = next(k for k in [*identity, *recorded] if recorded.get(k, "(unset)") != identity.get(k, "(unset)"))
        raise SpecError(
            f"study {name!r} was created with {changed}={recorded.get(changed, '(unset)')!r}, not "
            f"{identity.get(changed, '(unset)')!r}; resume it with its settings or choose another study_name"
        )
    return study, storage


class Progress:
    """A progress bar over the study's finished trials, with the best so far."""

    def __init__(self, study: optuna.Study, n_trials: int, metric: str, enabled: bool) -> None:
        self.metric = metric
        self.best: tuple[float, float] | None = None
        self.bar = tqdm(total=n_trials, initial=min(finished(study), n_trials), desc="trials", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr)
        for t in completed(study):
            self._update_best(t)
        self._show()

    def _update_best(self, t: FrozenTrial) -> None:
        if t.state == TrialState.COMPLETE and (self.best is None or t.user_attrs[self.metric] > self.best[0]):
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

    def __enter__(self) -> "StopOnCtrlC":
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


def scaled_width(problem: Problem) -> float | None:
    """The largest width multiplier (0.1 ... 3.0, steps of 0.05) at which the base meets the budget."""
    lo, hi, found = 0, len(WIDTHS) - 1, None
    while lo <= hi:  # latency grows with width: a binary search over the grid
        mid = (lo + hi) // 2
        if problem.latency_ms(problem.base_at_width(WIDTHS[mid])[0]) <= problem.budget_ms:
            found, lo = WIDTHS[mid], mid + 1
        else:
            hi = mid - 1
    return found


def baselines(problem: Problem, study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Score of the base network and of the base width-scaled to the budget (kept on the study)."""
    cached = study.user_attrs.get("baselines")
    if cached is not None:
        return cached
    out: dict[str, dict[str, Any]] = {}
    width = scaled_width(problem)
    for label, w in (("base", 1.0), ("scaled", width)):
        if w is None:
            continue
        spec, proxy = problem.base_at_width(w)
        outcome = problem.evaluate_specs(spec, proxy)
        out[label] = {"width_mult": w, "score": outcome.score, "latency_ms": outcome.latency_ms}
    study.set_user_attr("baselines", out)
    return out


def fresh_scores(problem: Problem, study: optuna.Study, best: FrozenTrial | None, base_info: dict[str, Any],
                 seeds: int) -> dict[str, tuple[float, ...]]:
    """The report's networks (key -> accuracies) trained again from ``seeds`` seeds no trial used,
    kept on the study so that a resumed run does not train them again.

    The best trial's accuracy is the highest of many noisy evaluations (the seed moves a short
    training's accuracy by about as much as the architecture does), so it flatters the best
    against the baselines; fresh seeds compare them on equal terms."""
    if seeds == 0 or problem.evaluator != "train":
        return {}
    fresh = problem.fresh_settings(seeds)
    which = fresh.seeds_label
    networks = {label: (f"width {info['width_mult']:g}, {which}", problem.base_at_width(info["width_mult"])[1])
                for label, info in base_info.items()}
    if best is not None:
        networks = {"best": (f"trial {best.number}, {which}", problem.proxy.apply(best.params)), **networks}
    kept = dict(study.user_attrs.get("fresh_seeds", {}))
    todo = {key: (tag, proxy) for key, (tag, proxy) in networks.items() if tag not in kept}
    if todo:
        print(f"training {', '.join(todo)} again from {which} (fresh_seeds={seeds})", file=sys.stderr)
    for tag, proxy in todo.values():
        kept[tag] = list(problem.rescore(proxy, fresh))
        study.set_user_attr("fresh_seeds", kept)
    return {key: tuple(kept[tag]) for key, (tag, _) in networks.items()}


def remeasure(problem: Problem, networks: dict[str, tuple[str, Any, float]],
              fresh: dict[str, tuple[float, ...]]) -> dict[str, Entry]:
    """The report's networks (key -> label, spec, score), measured side by side on this machine; with
    a target's table (``latency.table``), predicted by it, as this machine cannot measure the target."""
    specs = [spec for _, spec, _ in networks.values()]
    if problem.latency.table is not None:
        assert problem.table is not None
        timed = [Latency(ms, ms, ms, 0, problem.latency.batch_size, problem.table.fingerprint)
                 for ms in (problem.lut_ms(s) for s in specs)]
    else:
        timed = measure_side_by_side([(build(s), s.in_chans, s.input_size) for s in specs], problem.latency)
    entries = {}
    for (key, (label, spec, score)), latency in zip(networks.items(), timed):
        cost = count(spec)
        entries[key] = Entry(label, latency, score, cost.macs, cost.params, problem.budget_ms, fresh.get(key, ()))
    return entries


def report_networks(problem: Problem, best: FrozenTrial | None, best_spec: Any, base_info: dict[str, Any]) -> dict[str, Any]:
    """The best found, the base and the width-scaled base: what the report compares."""
    networks: dict[str, tuple[str, Any, float]] = {}
    if best is not None:
        networks["best"] = (f"best found (trial {best.number})", best_spec, best.user_attrs[problem.metric])
    if "base" in base_info:
        networks["base"] = (f"base {problem.space.base.name}", problem.base_at_width(1.0)[0], base_info["base"]["score"])
    if "scaled" in base_info:
        w = base_info["scaled"]["width_mult"]
        networks["scaled"] = (f"base x width {w:g} (MnasNet's baseline)", problem.base_at_width(w)[0], base_info["scaled"]["score"])
    return networks


def best_as_table(problem: Problem, study: optuna.Study, best: FrozenTrial, spec: ModelSpec) -> tuple[str, str | None]:
    """best.yaml: the best network as its base's table (every knob applies to it), or, where the
    table cannot say it, the expanded form and the reason (a note for the report)."""
    try:
        data = problem.space.table(spec, spec.name)
    except SpecError as e:
        note = f"best.yaml is the expanded form (num_classes, in_chans and input_size apply to it, the multipliers do not): {e}"
        print(f"{PROG}: warning: {note}", file=sys.stderr)
        return spec.to_yaml(), note
    header = (f"# The best network of space {problem.space.name} (study {study.study_name}, trial {best.number}) as its base's\n"
              f"# table: rows the search changed state its choices. Every knob applies: python -m archgen spec=best.yaml\n"
              f"# model.num_classes=10 model.input_size=32 model.width_mult=0.5 ...")
    return table_dump(data, header), None


def report_notes(cfg: DictConfig, problem: Problem, study: optuna.Study, best: FrozenTrial | None, base_info: dict[str, Any],
                 final: bool, table_note: str | None = None) -> list[str]:
    notes = [v for k, v in study.user_attrs.items() if k == "netadapt_stop"]
    if table_note:
        notes.append(table_note)
    tuned = study.user_attrs.get("netadapt_final")
    if tuned is not None:
        notes.append(f"NetAdapt's long-term fine-tune: trial {tuned['trial']} trained {tuned['epochs']} more epochs from "
                     f"its weights reaches {problem.metric} {tuned['accuracy']:.4f} (weights: best.pt)")
    if final and cfg.baselines and "scaled" not in base_info:
        notes.append(f"no width multiplier in {WIDTHS[0]:g}-{WIDTHS[-1]:g} brings the base within the budget "
                     f"({problem.latency.source} latency), so there is no width-scaled baseline")
    if best is None:
        notes.append("no trial completed")
    elif best.user_attrs["latency_ms"] > problem.budget_ms:
        notes.append("no trial met the budget; the best is the highest reward over it")
    return notes


def write_outputs(
    cfg: DictConfig, out_dir: Path, problem: Problem, strategy: Any, study: optuna.Study, started: float,
    final: bool,
) -> dict[str, Any]:
    """Everything a run leaves; ``final`` False (an interrupted run) skips the re-measurements and baselines."""
    metric = problem.metric
    best = strategy.best(problem, study)
    trials = study.get_trials(deepcopy=False)
    base_info = baselines(problem, study) if final and cfg.baselines else {}
    best_spec, table_note = None, None
    if best is not None:
        best_spec = dataclasses.replace(problem.space.apply(best.params), name=f"{problem.space.base.name}_search")
        best_yaml, table_note = best_as_table(problem, study, best, best_spec)
        write_atomic(out_dir / "best.yaml", best_yaml)
    entries = {}
    if final:
        fresh = fresh_scores(problem, study, best, base_info, cfg.fresh_seeds)
        entries = remeasure(problem, report_networks(problem, best, best_spec, base_info), fresh)
    write_trials(out_dir / "trials.csv", study, metric)
    tuned = study.user_attrs.get("netadapt_final")
    if tuned is not None and Path(tuned["weights"]).is_file():  # NetAdapt's chosen network, trained
        write_atomic(out_dir / "best.pt", Path(tuned["weights"]).read_bytes())
    front = pareto_front(completed(study), problem)
    marks = {f"best (trial {best.number})": (best.user_attrs["latency_ms"], best.user_attrs[metric])} if best else {}
    for label, info in base_info.items():
        marks["base" if label == "base" else f"base x {info['width_mult']:g}"] = (info["latency_ms"], info["score"])
    plot_pareto(out_dir / "pareto.png", trials, metric, problem.budget_ms, marks, front)
    objective = "reward ACC x (LAT/T)^w" if strategy.name == "mnasnet" else metric
    if completed(study):
        plot_history(out_dir / "history.png", study, metric, objective)
    if any(t.intermediate_values for t in trials):
        plot_intermediate(out_dir / "intermediate.png", study, objective)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)}
    # a running trial is not done: another worker runs it, or its worker was lost and a claim will fail it
    running = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    skipped = len(uncounted(trials))
    done = finished_of(trials)
    early = sum("pruned_at_epoch" in t.user_attrs for t in trials)
    pruned = ", ".join(part for part in (f"{counts['pruned'] - early} pruned over the budget" if counts["pruned"] > early else "",
                                         f"{early} pruned early by the pruner" if early else "") if part) or "0 pruned"
    throughput = [t.user_attrs["images_per_s"] for t in completed(study) if "images_per_s" in t.user_attrs]
    evaluator = (f"{problem.evaluator} on {problem.data.name} ({problem.data.in_chans}x{problem.data.size}x"
                 f"{problem.data.size}, {problem.data.num_classes} classes), {problem.runtime.describe()}")
    if throughput:
        evaluator += f", {statistics.fmean(throughput):.0f} training images/s (mean over the trials)"
    settings = {
        "space": f"{problem.space.name} (base {problem.space.base.name})",
        "budget": f"{problem.budget_ms:g} ms, latency {problem.latency.source} in {describe(fingerprint(problem.latency))}"
                  + (f", lookup table {problem.table.path}" if problem.table is not None and problem.latency.source == "lut"
                     else "") + ("; the report's latencies are the target table's predictions (this machine cannot "
                                 "measure the target)" if problem.latency.table is not None
                                 else "; the best network re-measured end to end in that runtime"),
        "strategy": f"{strategy.name} {strategy}",
        "evaluator": evaluator,
        "pruner": type(study.pruner).__name__,
        "study": f"{study.study_name}: {done} of n_trials={cfg.n_trials} done ({counts['complete']} complete, "
                 f"{counts['fail']} failed, {pruned})" + "".join(
                     part for part in (f"; {skipped} not counted (lost and retried, or interrupted)" if skipped else "",
                                       f"; {running} running or waiting, not done" if running else "") if part),
        "run time": f"{time.perf_counter() - started:.0f} s" + ("" if final else " (interrupted)"),
    }
    write_atomic(out_dir / "report.md", report_md(
        title=f"Search: {problem.space.name} within {problem.budget_ms:g} ms", settings=settings,
        entries=list(entries.values()), metric=metric, best=best, study=study, budget_ms=problem.budget_ms,
        front=front if strategy.name == "pareto" else [], notes=report_notes(cfg, problem, study, best, base_info, final, table_note),
    ))
    summary = {
        "space": problem.space.name, "strategy": strategy.name, "pruner": str(cfg.get("pruner") or "none"),
        "budget_ms": problem.budget_ms, "metric": metric,
        "latency_backend": problem.latency.backend, "latency_runtime": fingerprint(problem.latency)["runtime"],
        "latency_table": str(problem.table.path) if problem.table is not None and problem.latency.source == "lut" else None,
        "study_name": study.study_name, "trials": done, **counts, "pruned_early": early,
        "running": running, "not_counted": skipped,
        "runtime": problem.runtime.describe(),
        "images_per_s": statistics.fmean(throughput) if throughput else None,
        "best_trial": best.number if best else None,
        "score": best.user_attrs[metric] if best else None,
        "latency_ms": entries["best"].latency.median_ms if "best" in entries else None,
        "meets_budget": entries["best"].meets if "best" in entries else None,
        "base_latency_ms": entries["base"].latency.median_ms if "base" in entries else None,
        "base_score": base_info.get("base", {}).get("score"),
        "scaled_width": base_info.get("scaled", {}).get("width_mult"),
        "scaled_latency_ms": entries["scaled"].latency.median_ms if "scaled" in entries else None,
        "scaled_score": base_info.get("scaled", {}).get("score"),
        **{f"{prefix}fresh_score": entries[key].fresh_mean if key in entries else None
           for key, prefix in (("best", ""), ("base", "base_"), ("scaled", "scaled_"))},
        "entries": {k: e.to_dict() for k, e in entries.items()},
        "netadapt_final_score": (study.user_attrs.get("netadapt_final") or {}).get("accuracy"),
        "interrupted": not final,
    }
    write_json(out_dir / SUMMARY, summary)
    return summary


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """One search; raises SpecError for bad input and KeyboardInterrupt after saving what it has."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not is_int(cfg.n_trials) or cfg.n_trials < 1:
        raise SpecError(f"n_trials must be an integer >= 1, got {cfg.n_trials!r}")
    if not is_int(cfg.seed) or cfg.seed < 0:
        raise SpecError(f"seed must be an integer >= 0 (the sampler's, and each trial's with its number), got {cfg.seed!r}")
    if not is_int(cfg.fresh_seeds) or cfg.fresh_seeds < 0:
        raise SpecError(f"fresh_seeds must be an integer >= 0, got {cfg.fresh_seeds!r}")
    timeout = cfg.get("timeout_min")
    if timeout is not None and not (is_real(timeout) and timeout > 0):
        raise SpecError(f"timeout_min must be a positive number of minutes or null, got {timeout!r}")
    import_user_modules(cfg.get("imports"))  # before the space: its base may use the user's block types
    strategy = make_strategy(str(cfg.strategy), _section(cfg, str(cfg.strategy)))
    check_pruner(str(cfg.get("pruner") or "none"), strategy.name)
    problem = make_problem(cfg, strategy.name)
    check_budget(problem)
    study, storage = open_study(cfg, problem, strategy, out_dir)
    print(f"study {study.study_name}: {finished(study)} of {cfg.n_trials} trials done")
    progress = Progress(study, cfg.n_trials, problem.metric, bool(cfg.progress))
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


@hydra.main(config_path=str(CONF_DIR), config_name="search", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    run_app(PROG, lambda: run(cfg, out_dir),
            f"the study is saved, run again with the same study_name to resume (outputs so far in {out_dir})", out_dir)


def run_name(space: Any, strategy: Any, budget_ms: Any) -> str:
    """The run directory's name after its time: the space's file stem (never its path, so that the
    directory stays under outputs/), the strategy, the budget and this process's id (two workers
    started in the same second on one study get a directory each)."""
    return "_".join(path_component(part) for part in (Path(str(space)).stem, strategy, f"{budget_ms}ms", os.getpid()))


def register_resolvers() -> None:
    """The resolvers conf/search.yaml's run and sweep directories use."""
    if not OmegaConf.has_resolver("search_run_name"):
        OmegaConf.register_new_resolver("search_run_name", run_name)
    register_path_component()


def main() -> None:
    register_resolvers()
    argv = sys.argv[1:]
    check_choices(PROG, argv, "strategy", sorted(STRATEGIES))
    check_choices(PROG, argv, "evaluator", sorted(EVALUATORS))
    check_choices(PROG, argv, "pruner", list(PRUNERS))
    check_choices(PROG, argv, "data", sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml")))
    _hydra_main()


if __name__ == "__main__":
    main()
