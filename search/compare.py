"""``python -m search.compare``: search strategies judged against a tabular benchmark's ground truth.

Every strategy runs ``repeats`` times (seeds 0, 1, ...) at each budget, the 25th, 50th and 75th
percentile of the space's latency (the lookup table's, as the searches use), and is judged at each
trial count of ``trials``: the **regret** of a run is the best true score within the budget minus
the true score of the network the strategy returns (``Strategy.best``), in the table's points. A
trial's score is one of the table's trainings, drawn with the run's seed and the trial's number
(``evaluator=table``), so a strategy sees the seed noise a real training has; a strategy and the
baseline share each seed's draws, which pairs their runs for a Wilcoxon signed-rank test.

A strategy whose answer after n trials is the answer of a run of n trials (``Strategy.anytime``)
runs once, to the largest count, and is read at every count; NetAdapt runs once per count. A run
that returns nothing (no trial completed) counts as returning the space's worst network. A strategy
may return a network over the budget (MnasNet's soft reward; NetAdapt before it meets the budget):
its regret is judged against the same optimum within the budget (it can be negative), the share of
runs over the budget says how often, and the Wilcoxon test counts such an answer as the worst
network, so that an answer the budget rules out is never a win.

Outputs: ``runs.csv`` (every run at every count), ``compare.md`` (per budget and trial count: the
median regret and its interquartile range over the seeds, the shares of optimal and over-budget
answers, the test against the baseline), ``compare.json`` and ``regret.png``.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import optuna
from omegaconf import DictConfig, OmegaConf
from scipy.stats import wilcoxon

from archgen import SpecError
from archgen.checks import check_setting, is_int, is_real, load_settings
from archgen.cli import hydra_command
from archgen.cost.latency import LatencySettings, describe, fingerprint
from archgen.fileio import write_atomic, write_csv, write_json
from archgen.report import markdown_table

from .evaluators import make_evaluator
from .ground_truth import GroundTruth
from .problem import Problem
from .storage import memory_storage
from .strategies import Strategy, make_strategy

PROG = "search.compare"


@dataclass(frozen=True)
class Job:
    """One strategy's searches at one seed and budget, read at ``counts`` trials."""

    variant: str
    strategy: Strategy
    seed: int
    budget: int  # index into the budgets
    budget_ms: float
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Answer:
    """What a run returns after ``trials`` trials: the arch's key (None: nothing) and its trial latency."""

    variant: str
    seed: int
    budget: int
    trials: int
    arch: str | None
    latency_ms: float | None


_problem: Problem | None = None  # each worker process's, made once (its space, lookup table and benchmark)


def _init_worker(space: str, latency: LatencySettings, table: Mapping[str, Any], cache: str | None) -> None:
    global _problem
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _problem = Problem(space, 1.0, latency, make_evaluator("table", table), cache=cache, lut=True)


def search_once(job: Job) -> list[Answer]:
    """A strategy's search in memory; its answer at each trial count (one run read at every count,
    or one run per count where the strategy is not ``anytime``)."""
    assert _problem is not None
    problem = _problem.with_budget(job.budget_ms)
    problem.seed = job.seed
    answers = []
    runs = [job.counts] if job.strategy.anytime else [(n,) for n in job.counts]
    for counts in runs:
        storage = memory_storage()
        study = optuna.create_study(storage=storage.backend, sampler=job.strategy.make_sampler(job.seed),
                                    directions=list(job.strategy.directions))
        job.strategy.run(problem, study, storage, max(counts), [])
        trials = study.get_trials(deepcopy=False)
        for n in counts:
            best = job.strategy.best(problem, _prefix(study, trials[:n]) if n < len(trials) else study)
            answers.append(Answer(job.variant, job.seed, job.budget, n, None if best is None else best.user_attrs["arch"],
                                  None if best is None else best.user_attrs["latency_ms"]))
    return answers


def _prefix(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial]) -> optuna.Study:
    """A study holding only ``trials`` (the first n of a longer run), with the run's study attributes."""
    view = optuna.create_study(directions=list(study.directions))
    view.add_trials(trials)
    for k, v in study.user_attrs.items():
        view.set_user_attr(k, v)
    return view


def make_jobs(cfg: DictConfig, budgets: Sequence[float]) -> list[Job]:
    """Every (strategy, seed, budget) search, the slowest strategies' first (TPE's trials cost the most)."""
    sections = OmegaConf.to_container(cfg.strategies, resolve=True)
    assert isinstance(sections, dict)
    jobs = []
    for variant in cfg.compare:
        if variant not in sections:
            raise SpecError(f"compare: {variant!r} is not in strategies ({', '.join(sections)})")
        settings = dict(sections[variant])
        strategy = make_strategy(str(settings.pop("strategy", variant)), settings)
        jobs += [Job(variant, strategy, seed, b, budget_ms, tuple(cfg.trials))
                 for seed in range(cfg.repeats) for b, budget_ms in enumerate(budgets)]
    return sorted(jobs, key=lambda j: j.strategy.name != "mnasnet")


def check_settings(cfg: DictConfig) -> None:
    check_setting("repeats", cfg.repeats, is_int(cfg.repeats) and cfg.repeats >= 1, "an integer >= 1")
    check_setting("workers", cfg.workers, is_int(cfg.workers) and cfg.workers >= 1, "an integer >= 1")
    trials = list(cfg.trials)
    check_setting("trials", trials, bool(trials) and all(is_int(n) and n >= 1 for n in trials) and trials == sorted(set(trials)),
                  "increasing integers >= 1")
    check_setting("percentiles", list(cfg.percentiles),
                  bool(cfg.percentiles) and all(is_real(q) and 0 < q < 100 for q in cfg.percentiles), "numbers in (0, 100)")
    check_setting("baseline", cfg.baseline, cfg.baseline in cfg.compare, f"one of compare ({', '.join(cfg.compare)})")


def run_jobs(jobs: list[Job], cfg: DictConfig, latency: LatencySettings, table: Mapping[str, Any]) -> list[Answer]:
    """The jobs on ``workers`` processes (or here, with one), with a line of progress per strategy done."""
    init = (str(cfg.space), latency, table, cfg.get("cache"))
    answers: list[Answer] = []
    left = {v: sum(j.variant == v for j in jobs) for v in cfg.compare}
    start = time.perf_counter()

    def done(result: list[Answer]) -> None:
        answers.extend(result)
        left[result[0].variant] -= 1
        if not left[result[0].variant]:
            print(f"{result[0].variant}: done ({time.perf_counter() - start:.0f} s)", flush=True)

    if cfg.workers == 1:
        _init_worker(*init)
        for job in jobs:
            done(search_once(job))
    else:
        with multiprocessing.get_context("spawn").Pool(cfg.workers, _init_worker, init) as pool:
            for result in pool.imap_unordered(search_once, jobs):
                done(result)
    return answers


def judge(answers: Sequence[Answer], truth: GroundTruth, budgets: Sequence[float]) -> list[dict[str, Any]]:
    """Every answer with its true score, regret, and whether it is over the budget or the optimum."""
    index = {k: i for i, k in enumerate(truth.keys)}
    worst = float(truth.truth.min())
    rows = []
    for a in answers:
        budget_ms = budgets[a.budget]
        optimum = truth.optimum(budget_ms)
        true = worst if a.arch is None else float(truth.truth[index[a.arch]])
        over = a.latency_ms is not None and a.latency_ms > budget_ms
        rows.append({**asdict(a), "budget_ms": budget_ms, "true_acc": true, "optimum": optimum,
                     "regret": optimum - true, "over_budget": over, "tested_regret": optimum - (worst if over else true),
                     "optimal": a.arch is not None and not over and true >= optimum})
    return sorted(rows, key=lambda r: (r["variant"], r["budget"], r["trials"], r["seed"]))


def summarise(rows: Sequence[Mapping[str, Any]], variants: Sequence[str], baseline: str, budgets: Sequence[float],
              counts: Sequence[int]) -> list[dict[str, Any]]:
    """Per strategy, budget and trial count: the median regret and its quartiles over the seeds, the
    shares of optimal and over-budget answers, and the one-sided Wilcoxon test against the baseline
    (on the regret with an answer over the budget counted as the worst network)."""
    by = {}
    for r in rows:
        by.setdefault((r["variant"], r["budget"], r["trials"]), []).append(r)
    out = []
    for b, budget_ms in enumerate(budgets):
        for n in counts:
            ref = np.array([r["tested_regret"] for r in sorted(by[(baseline, b, n)], key=lambda r: r["seed"])])
            for v in variants:
                runs = sorted(by[(v, b, n)], key=lambda r: r["seed"])
                regret = np.array([r["regret"] for r in runs])
                q1, median, q3 = np.percentile(regret, [25, 50, 75])
                out.append({"strategy": v, "budget": b, "budget_ms": budget_ms, "trials": n, "median": float(median),
                            "q1": float(q1), "q3": float(q3), "mean": float(regret.mean()),
                            "optimal": statistics.fmean(r["optimal"] for r in runs),
                            "over_budget": statistics.fmean(r["over_budget"] for r in runs),
                            "p": None if v == baseline else paired_p(np.array([r["tested_regret"] for r in runs]), ref)})
    return out


def paired_p(regret: np.ndarray, baseline: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p that ``regret`` is lower than the baseline's (paired by seed);
    1.0 where every pair ties."""
    if np.all(regret == baseline):
        return 1.0
    return float(wilcoxon(regret, baseline, alternative="less", zero_method="wilcox").pvalue)


def table_md(summary: Sequence[Mapping[str, Any]], budgets: Sequence[float], percentiles: Sequence[float],
             baseline: str) -> str:
    """One table per budget: each strategy at each trial count."""
    parts = []
    for b, (budget_ms, q) in enumerate(zip(budgets, percentiles)):
        rows = [[s["strategy"], s["trials"], f"{s['median']:.2f}", f"{s['q1']:.2f}-{s['q3']:.2f}",
                 f"{s['optimal']:.0%}", f"{s['over_budget']:.0%}", "" if s["p"] is None else f"{s['p']:.3g}"]
                for s in summary if s["budget"] == b]
        rows.sort(key=lambda r: (r[1], [s["strategy"] for s in summary].index(r[0])))
        parts.append(f"### Budget {budget_ms:.3f} ms (the {q:g}th percentile of the space's latency)\n\n" + markdown_table(
            ["strategy", "trials", "median regret", "IQR", "optimum", "over budget", f"p (< {baseline})"], rows))
    return "\n".join(parts)


def plot(path: Path, summary: Sequence[Mapping[str, Any]], budgets: Sequence[float], percentiles: Sequence[float],
         variants: Sequence[str]) -> None:
    """Median regret against trials, per strategy (lines) and budget (panels); the band is the IQR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), sharey=True, squeeze=False)
    for b, ax in enumerate(axes[0]):
        for v in variants:
            pts = sorted((s["trials"], s["median"], s["q1"], s["q3"]) for s in summary if s["budget"] == b and s["strategy"] == v)
            n, med, lo, hi = (np.array(x) for x in zip(*pts))
            ax.plot(n, med, marker="o", label=v)
            ax.fill_between(n, lo, hi, alpha=0.1)
        ax.set_xscale("log")
        ax.set_title(f"budget {budgets[b]:.2f} ms (p{percentiles[b]:g} of latency)")
        ax.set_xlabel("trials")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("regret (points of true accuracy), median over seeds")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def run(cfg: DictConfig, out_dir: Path) -> list[dict[str, Any]]:
    """The comparison ``conf/compare.yaml`` describes, written into ``out_dir``."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    check_settings(cfg)
    latency = load_settings(LatencySettings, "latency", OmegaConf.to_container(cfg.latency, resolve=True))
    table = OmegaConf.to_container(cfg.table, resolve=True)
    problem = Problem(str(cfg.space), 1.0, latency, make_evaluator("table", table), cache=cfg.get("cache"), lut=True)
    truth = GroundTruth.of(problem)
    budgets = [truth.percentile_ms(q) for q in cfg.percentiles]
    jobs = make_jobs(cfg, budgets)
    print(f"{len(truth.keys)} points of {problem.space.name}, latency by the lookup table on "
          f"{describe(fingerprint(latency))}; budgets {', '.join(f'{b:.3f}' for b in budgets)} ms; {len(jobs)} searches "
          f"({', '.join(cfg.compare)} x {cfg.repeats} seeds x {len(budgets)} budgets), {cfg.workers} worker(s)", flush=True)
    answers = run_jobs(jobs, cfg, latency, table)
    rows = judge(answers, truth, budgets)
    summary = summarise(rows, list(cfg.compare), str(cfg.baseline), budgets, list(cfg.trials))
    write_csv(out_dir / "runs.csv", list(rows[0]), rows)
    md = table_md(summary, budgets, list(cfg.percentiles), str(cfg.baseline))
    seconds = time.perf_counter() - started
    write_atomic(out_dir / "compare.md", f"# Strategies against {problem.space.name}'s ground truth\n\n{md}\n"
                 f"{cfg.repeats} seeds per cell; regret in points of the table's true score; p: one-sided paired "
                 f"Wilcoxon signed-rank test that the regret is below {cfg.baseline}'s, an answer over the budget counted "
                 f"as the worst network; run time {seconds:.0f} s.\n")
    write_json(out_dir / "compare.json", {"space": problem.space.name, "budgets_ms": budgets,
                                         "percentiles": list(cfg.percentiles), "repeats": cfg.repeats,
                                         "seconds": seconds, "summary": summary})
    plot(out_dir / "regret.png", summary, budgets, list(cfg.percentiles), list(cfg.compare))
    print(md)
    print(f"run time {seconds:.0f} s; wrote {out_dir}")
    return summary


def main() -> None:
    hydra_command(PROG, "compare", run, lambda out_dir: "nothing was written (the runs are kept in memory)")()


if __name__ == "__main__":
    main()
