"""What a search run leaves in its run directory (the files ``search.report`` describes), written
from the study: its best network as ``best.yaml``, ``trials.csv``, the plots, ``report.md`` with
the best re-measured against the baselines, and ``summary.json``.

A run stopped by Ctrl-C writes the same files from what the study holds, without the
re-measurements and baselines (``final=False``).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from archgen import ModelSpec, SpecError, count
from archgen.cost.latency import describe, fingerprint
from archgen.fileio import write_atomic, write_json
from archgen.table_form import dump as table_dump

from .baselines import BUDGET_STEP, WIDTH_RANGE, baselines, fresh_scores
from .evaluators.table import Table
from .ground_truth import GroundTruth
from .problem import Problem
from .report import SUMMARY, Entry, plot_history, plot_intermediate, plot_pareto, report_md, write_trials
from .strategies import Strategy
from .trials import completed, finished_of, pareto_front, uncounted

PROG = "search"


@dataclass(frozen=True)
class Counts:
    """The study's trials by how they ended."""

    done: int  # finished and counted toward n_trials
    complete: int
    fail: int
    pruned: int
    pruned_early: int  # by the pruner, after an epoch (the others: over the budget, untrained)
    running: int  # running or waiting: another worker runs it, or a claim will fail it as lost
    not_counted: int  # lost and retried, or interrupted

    @classmethod
    def of(cls, study: optuna.Study) -> Counts:
        trials = study.get_trials(deepcopy=False)
        by_state = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)}
        return cls(done=finished_of(trials), complete=by_state[TrialState.COMPLETE], fail=by_state[TrialState.FAIL],
                   pruned=by_state[TrialState.PRUNED], pruned_early=sum("pruned_at_epoch" in t.user_attrs for t in trials),
                   running=sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials),
                   not_counted=len(uncounted(trials)))

    def describe(self, n_trials: int) -> str:
        over = self.pruned - self.pruned_early
        pruned = ", ".join(part for part in (f"{over} pruned over the budget" if over else "",
                                             f"{self.pruned_early} pruned early by the pruner" if self.pruned_early else "")
                           if part) or "0 pruned"
        extra = "".join(part for part in (
            f"; {self.not_counted} not counted (lost and retried, or interrupted)" if self.not_counted else "",
            f"; {self.running} running or waiting, not done" if self.running else "") if part)
        return f"{self.done} of n_trials={n_trials} done ({self.complete} complete, {self.fail} failed, {pruned}){extra}"


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


def report_entries(problem: Problem, best: FrozenTrial | None, best_spec: ModelSpec | None, base_info: Mapping[str, Any],
                   fresh: Mapping[str, tuple[float, ...]]) -> dict[str, Entry]:
    """The best found, the base and the width-scaled base, re-measured side by side (``Problem.remeasure``)."""
    networks: dict[str, tuple[str, ModelSpec, float]] = {}
    if best is not None and best_spec is not None:
        networks["best"] = (f"best found (trial {best.number})", best_spec, best.user_attrs[problem.metric])
    for label, info in base_info.items():
        name = f"base {problem.space.base.name}" if label == "base" else \
            f"base x width {info['width_mult']:g} (MnasNet's baseline)"
        networks[label] = (name, problem.base_at_width(info["width_mult"]).spec, info["score"])
    timed = problem.remeasure([spec for _, spec, _ in networks.values()])
    entries = {}
    for (key, (label, spec, score)), latency in zip(networks.items(), timed, strict=True):
        cost = count(spec)
        entries[key] = Entry(label, latency, score, cost.macs, cost.params, problem.budget_ms, fresh.get(key, ()))
    return entries


def write_plots(out_dir: Path, problem: Problem, strategy: Strategy, study: optuna.Study, best: FrozenTrial | None,
                base_info: Mapping[str, Any], front: list[FrozenTrial]) -> None:
    """pareto.png, and history.png and intermediate.png where there is something to draw."""
    metric, trials = problem.metric, study.get_trials(deepcopy=False)
    marks = {f"best (trial {best.number})": (best.user_attrs["latency_ms"], best.user_attrs[metric])} if best else {}
    for label, info in base_info.items():
        marks["base" if label == "base" else f"base x {info['width_mult']:g}"] = (info["latency_ms"], info["score"])
    plot_pareto(out_dir / "pareto.png", trials, metric, problem.budget_ms, marks, front)
    objective = strategy.objective(metric)
    if completed(study):
        plot_history(out_dir / "history.png", study, metric, objective)
    if any(t.intermediate_values for t in trials):
        plot_intermediate(out_dir / "intermediate.png", study, objective)


def notes(cfg: DictConfig, problem: Problem, strategy: Strategy, study: optuna.Study, best: FrozenTrial | None,
          base_info: Mapping[str, Any], final: bool, table_note: str | None) -> list[str]:
    """The report's notes: the strategy's, best.yaml's form, and what is missing and why."""
    lines = strategy.notes(problem, study) + ([table_note] if table_note else [])
    unscored = study.user_attrs.get("unscored", {})
    lines += list(unscored.values())
    if final and cfg.baselines and "scaled" not in base_info and "scaled" not in unscored:
        lines.append(f"no width multiplier in {WIDTH_RANGE[0]:g}-{WIDTH_RANGE[1]:g} (steps of {BUDGET_STEP:g}) brings the "
                     f"base within the budget ({problem.latency.source} latency), so there is no width-scaled baseline")
    if best is None:
        lines.append("no trial completed")
    elif best.user_attrs["latency_ms"] > problem.budget_ms:
        lines.append("no trial met the budget; the best is the highest reward over it")
    return lines


def settings_lines(cfg: DictConfig, problem: Problem, strategy: Strategy, study: optuna.Study, counts: Counts,
                   seconds: float, final: bool) -> dict[str, str]:
    """The report's head: what was searched, how, and how far it got."""
    table = problem.table is not None and problem.predicts
    budget = (f"{problem.budget_ms:g} ms, latency {problem.latency.source} in {describe(fingerprint(problem.latency))}"
              + (f", lookup table {problem.table.path}" if table and problem.table is not None else "")
              + ("; the report's latencies are the target table's predictions (this machine cannot measure the target)"
                 if problem.latency.table is not None else "; the best network re-measured end to end in that runtime"))
    throughput = images_per_s(study)
    evaluator = problem.describe_evaluator() + (
        f", {throughput:.0f} training images/s (mean over the trials)" if throughput is not None else "")
    return {
        "space": f"{problem.space.name} (base {problem.space.base.name})",
        "budget": budget,
        "strategy": str(strategy),
        "evaluator": evaluator,
        "pruner": type(study.pruner).__name__,
        "study": f"{study.study_name}: {counts.describe(cfg.n_trials)}",
        "run time": f"{seconds:.0f} s" + ("" if final else " (interrupted)"),
    }


def images_per_s(study: optuna.Study) -> float | None:
    """The trials' mean training throughput, where the evaluator trains."""
    figures = [t.user_attrs["images_per_s"] for t in completed(study) if "images_per_s" in t.user_attrs]
    return statistics.fmean(figures) if figures else None


def summary_of(cfg: DictConfig, problem: Problem, strategy: Strategy, study: optuna.Study, best: FrozenTrial | None,
               entries: Mapping[str, Entry], base_info: Mapping[str, Any], counts: Counts, final: bool) -> dict[str, Any]:
    """summary.json: the figures a sweep aggregates into one table of the best per job."""
    runtime = problem.evaluator.runtime
    return {
        "space": problem.space.name, "strategy": strategy.name, "evaluator": problem.evaluator.name,
        "pruner": str(cfg.get("pruner") or "none"), "budget_ms": problem.budget_ms, "metric": problem.metric,
        "latency_backend": problem.latency.backend, "latency_runtime": fingerprint(problem.latency)["runtime"],
        "latency_table": str(problem.table.path) if problem.table is not None and problem.predicts else None,
        "study_name": study.study_name, "trials": counts.done, "complete": counts.complete, "fail": counts.fail,
        "pruned": counts.pruned, "pruned_early": counts.pruned_early, "running": counts.running,
        "not_counted": counts.not_counted,
        "runtime": runtime.describe() if runtime is not None else None,
        "images_per_s": images_per_s(study),
        "best_trial": best.number if best else None,
        "score": best.user_attrs[problem.metric] if best else None,
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
        **strategy.summary(problem, study),
        "interrupted": not final,
    }


def judged(problem: Problem, best: FrozenTrial | None) -> tuple[list[str], dict[str, Any]]:
    """With a tabular benchmark, the best's true score and rank in the space within the budget (report
    lines, summary.json figures); otherwise nothing."""
    if best is None or not isinstance(problem.evaluator, Table) or "arch" not in best.user_attrs:
        return [], {}
    lines, figures = GroundTruth.of(problem).notes(best.user_attrs["arch"], problem.budget_ms, problem.metric)
    if not problem.predicts:
        lines.append("the trials were timed end to end, the ground truth ranks by the lookup table's latency: the two "
                     "may disagree near the budget (latency=lut searches with the table's latency itself)")
    return lines, figures


def write_outputs(cfg: DictConfig, out_dir: Path, problem: Problem, strategy: Strategy, study: optuna.Study,
                  started: float, final: bool) -> dict[str, Any]:
    """Everything a run leaves; ``final`` False (an interrupted run) skips the re-measurements and baselines."""
    best = strategy.best(problem, study)
    base_info = baselines(problem, study) if final and cfg.baselines else {}
    best_spec, table_note = None, None
    if best is not None:
        best_spec = dataclasses.replace(problem.space.apply(best.params), name=f"{problem.space.base.name}_search")
        best_yaml, table_note = best_as_table(problem, study, best, best_spec)
        write_atomic(out_dir / "best.yaml", best_yaml)
    entries: dict[str, Entry] = {}
    if final:
        fresh = fresh_scores(problem, study, best, base_info, cfg.fresh_seeds)
        entries = report_entries(problem, best, best_spec, base_info, fresh)
    write_trials(out_dir / "trials.csv", study, problem.metric, problem.evaluator.columns)
    strategy.write(study, out_dir)
    front = pareto_front(completed(study), problem.metric, problem.budget_ms)
    write_plots(out_dir, problem, strategy, study, best, base_info, front)
    counts = Counts.of(study)
    truth_notes, truth = judged(problem, best)
    write_atomic(out_dir / "report.md", report_md(
        title=f"Search: {problem.space.name} within {problem.budget_ms:g} ms",
        settings=settings_lines(cfg, problem, strategy, study, counts, time.perf_counter() - started, final),
        entries=list(entries.values()), metric=problem.metric, best=best, study=study, budget_ms=problem.budget_ms,
        front=front if strategy.reports_front else [],
        notes=notes(cfg, problem, strategy, study, best, base_info, final, table_note) + truth_notes,
    ))
    summary = summary_of(cfg, problem, strategy, study, best, entries, base_info, counts, final) | truth
    write_json(out_dir / SUMMARY, summary)
    return summary
