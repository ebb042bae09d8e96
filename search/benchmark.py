"""Does a search under a latency budget beat hand-scaling at the same latency? MnasNet's claim
(Tan et al. 2019, Sec. 5: MnasNet against MobileNetV2 width-scaled to the same latency),
measured on this machine with one command.

``python -m search.benchmark``:

1. measures the base network of the space (deployment form, ``latency.*`` protocol) and sets
   the budgets at ``budgets`` times its latency (0.5x, 0.75x, 1x);
2. runs one NSGA-II Pareto search (``strategy=pareto``) over (accuracy, latency) with the
   largest budget (plus ``slack``) as its constraint, on ``workers`` processes sharing one
   Optuna study; the search serves every budget;
3. re-measures every completed trial side by side with the base, in one process, alone (a
   worker times its trials while the other trains), and takes for each budget the most
   accurate trial within it;
4. for each budget, scales the base's width until its latency, measured side by side with the
   searched network, is within ``tolerance`` of it (MnasNet's baseline: same latency, hand-scaled);
5. trains both proxies again from ``fresh_seeds`` seeds no trial used, with ``longer`` times the
   trials' epochs, the two networks from the same seeds (paired);
6. re-measures every network side by side and writes the table (mean +- std accuracy, the paired
   difference and its standard error, latency, MACs, params), the plot (accuracy against
   latency, both curves) and its own running time.

"Better" is a paired difference beyond two standard errors; anything less is "no difference
measured" (the best trial's own accuracy is the highest of many noisy draws, so it is never
what the comparison uses). ``quick=true`` is the same pipeline on tiny settings, for the tests.

    python -m search.benchmark                        # Fashion-MNIST, conf/benchmark.yaml
    python -m search.benchmark n_trials=60 fresh_seeds=5
    python -m search.benchmark study_name=b storage=sqlite:///outputs/search/bench.db   # resumable
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial
from tqdm import tqdm

from archgen import ModelSpec, SpecError, count
from archgen.checks import is_int, is_real
from archgen.cli import hydra_command
from archgen.cost.latency import Latency, describe
from archgen.fileio import write_atomic, write_csv, write_json
from archgen.report import markdown_table

from .baselines import width_matching
from .evaluators import Trainer, make_evaluator
from .evaluators.train import TrainResult
from .parallel import Job, pin, train_all
from .pipeline import make_problem
from .problem import Problem
from .report import pyplot, save_figure
from .storage import open_storage
from .strategies import Strategy, make_strategy
from .study import open_study, section, study_pruner
from .trials import completed, finished

PROG = "search.benchmark"
# tiny settings: the whole pipeline in about a minute (the tests' form)
QUICK = {"n_trials": 4, "population": 2, "fresh_seeds": 2, "longer": 1,
         "data": {"limit": 200}, "train": {"epochs": 1, "batch_size": 32},
         "latency": {"warmup": 1, "repeats": 5}}


@dataclass(frozen=True)
class Settings:
    """The benchmark's own settings (the top level of ``conf/benchmark.yaml``)."""

    budgets: tuple[float, ...]
    n_trials: int
    workers: int
    population: int
    fresh_seeds: int
    longer: int
    tolerance: float
    slack: float  # the search's constraint: the largest budget x (1 + slack)
    seed: int

    def __post_init__(self) -> None:
        if not self.budgets or not all(is_real(b) and b > 0 for b in self.budgets):
            raise SpecError(f"budgets must be a non-empty list of positive multiples of the base's latency, got {list(self.budgets)!r}")
        for name, low in (("n_trials", 1), ("workers", 1), ("population", 2), ("fresh_seeds", 2), ("longer", 1)):
            value = getattr(self, name)
            if not (is_int(value) and value >= low):
                raise SpecError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (is_real(self.tolerance) and 0 < self.tolerance < 1):
            raise SpecError(f"tolerance must be a fraction in (0, 1), got {self.tolerance!r}")
        if not (is_real(self.slack) and self.slack >= 0):
            raise SpecError(f"slack must be a number >= 0, got {self.slack!r}")
        if not is_int(self.seed):
            raise SpecError(f"seed must be an integer, got {self.seed!r}")


@dataclass(frozen=True)
class Network:
    """One network of the comparison: deployment and proxy specs, re-measured latency, fresh accuracies."""

    label: str
    spec: ModelSpec
    proxy: ModelSpec
    accuracies: tuple[float, ...] = ()
    latency: Latency | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies)


@dataclass(frozen=True)
class Comparison:
    """One budget: the searched network against the base width-scaled to its latency."""

    fraction: float  # of the base's latency
    budget_ms: float
    trial: int
    width: float
    searched: Network
    scaled: Network

    @property
    def differences(self) -> list[float]:
        return [a - b for a, b in zip(self.searched.accuracies, self.scaled.accuracies)]

    @property
    def difference(self) -> float:
        return statistics.fmean(self.differences)

    @property
    def standard_error(self) -> float:
        """Of the paired difference: the two networks trained from the same seeds."""
        d = self.differences
        return statistics.stdev(d) / math.sqrt(len(d))

    @property
    def verdict(self) -> str:
        d, se = self.difference, self.standard_error
        if se == 0:
            return "search better" if d > 0 else "base better" if d < 0 else "no difference measured"
        return "search better" if d > 2 * se else "base better" if d < -2 * se else "no difference measured"

    @property
    def latency_ratio(self) -> float:
        assert self.searched.latency is not None and self.scaled.latency is not None
        return self.scaled.latency.median_ms / self.searched.latency.median_ms


def _sections(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    out = {k: section(cfg, k) for k in ("latency", "data", "train")}
    if cfg.quick:
        for k in ("latency", "data", "train"):
            out[k].update(QUICK[k])
    return out


def load(cfg: DictConfig) -> tuple[Settings, DictConfig]:
    """The benchmark's settings and the search config its workers run (``quick`` applied)."""
    top = {k: cfg[k] for k in ("n_trials", "population", "fresh_seeds", "longer")}
    if cfg.quick:
        top.update({k: QUICK[k] for k in top})
    budgets = cfg.budgets
    settings = Settings(
        budgets=tuple(budgets) if OmegaConf.is_list(budgets) else (budgets,), workers=cfg.workers,
        tolerance=cfg.tolerance, slack=cfg.slack, seed=cfg.seed, **top,
    )
    search = OmegaConf.create({
        "space": str(cfg.space), "budget_ms": 1.0, "evaluator": "train", "cache": cfg.get("cache"),
        "storage": cfg.get("storage"), "study_name": cfg.get("study_name"), "seed": settings.seed,
        **_sections(cfg),
    })
    return settings, search


def _search_parts(search: DictConfig, settings: Settings) -> tuple[Strategy, Trainer]:
    """The benchmark's strategy (NSGA-II) and evaluator (training, ``train.*``)."""
    trainer = make_evaluator("train", section(search, "train"))
    assert isinstance(trainer, Trainer)
    return make_strategy("pareto", {"population": settings.population}), trainer


def _worker(index: int, search: dict[str, Any], settings: Settings, study_name: str) -> None:
    """Search worker ``index``: pinned to its share of the cores, its own problem (data loaded
    once), trials until the study holds ``n_trials``."""
    pin(index, settings.workers)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = OmegaConf.create(search)
    strategy, trainer = _search_parts(cfg, settings)
    problem = make_problem(cfg, strategy, trainer)
    study, trials = open_study(cfg, problem, strategy, study_pruner(cfg, strategy, 1), study_name)
    strategy.run(problem, study, trials, settings.n_trials, [])


def _study_config(search: DictConfig, out_dir: Path) -> DictConfig:
    """The search config with its storage (default: the run directory's study.db) and study name."""
    storage = search.storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    return OmegaConf.merge(search, {"storage": storage, "study_name": search.study_name or "benchmark"})


def recorded_budget(search: DictConfig, out_dir: Path) -> float | None:
    """The constraint a resumed study was searched with (the base, re-measured, would move it a little)."""
    cfg = _study_config(search, out_dir)
    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage).backend)
    except KeyError:  # no such study yet
        return None
    return study.user_attrs.get("identity", {}).get("budget_ms")


def run_search(problem: Problem, search: DictConfig, settings: Settings, out_dir: Path) -> optuna.Study:
    """The Pareto search on ``settings.workers`` processes sharing one study (resumed when it exists)."""
    strategy, _ = _search_parts(search, settings)
    with_storage = _study_config(search, out_dir)
    study, _ = open_study(with_storage, problem, strategy, study_pruner(with_storage, strategy, 1), out_dir.name)
    todo = settings.n_trials - finished(study)
    if todo <= 0:
        return study
    container = OmegaConf.to_container(with_storage, resolve=True)
    container["budget_ms"] = problem.budget_ms  # type: ignore[index]
    bar = tqdm(total=settings.n_trials, initial=finished(study), desc="search trials", file=sys.stderr, dynamic_ncols=True)
    context = multiprocessing.get_context("spawn")
    # daemons: a benchmark that ends, however it ends in Python, takes its workers with it
    workers = [context.Process(target=_worker, args=(i, container, settings, study.study_name), daemon=True)
               for i in range(min(settings.workers, todo))]
    try:
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(timeout=2)
            bar.update(min(finished(study), settings.n_trials) - bar.n)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
        bar.update(min(finished(study), settings.n_trials) - bar.n)
        bar.close()
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        raise RuntimeError(f"a search worker exited with status {failed[0]}")
    return study


def latency_ratios(problem: Problem, study: optuna.Study) -> tuple[Latency, dict[int, float]]:
    """The base and every completed trial's deployment network re-measured side by side in this
    process, alone (``Problem.remeasure``): the base's latency and each trial's as a multiple of it.

    A worker times its trials while the other trains on the next core, so their figures run
    high and unevenly; the budgets, set against the base timed alone, are applied to these."""
    trials = completed(study)
    timed = problem.remeasure([problem.space.base, *(problem.space.apply(t.params) for t in trials)])
    return timed[0], {t.number: x.median_ms / timed[0].median_ms for t, x in zip(trials, timed[1:])}


def best_within(problem: Problem, study: optuna.Study, ratios: Mapping[int, float], fraction: float) -> FrozenTrial | None:
    """The most accurate completed trial whose re-measured latency is within ``fraction`` x the base's."""
    within = [t for t in completed(study) if ratios[t.number] <= fraction]
    return max(within, key=lambda t: t.user_attrs[problem.metric], default=None)


def retrain(problem: Problem, networks: Sequence[Network], settings: Settings, workers: int) -> list[Network]:
    """Each network's proxy trained from ``fresh_seeds`` seeds after the trials', ``longer`` x the epochs."""
    assert isinstance(problem.evaluator, Trainer)
    fresh = problem.evaluator.fresh(settings.fresh_seeds).settings
    fresh = replace(fresh, epochs=fresh.epochs * settings.longer)
    seeds = list(fresh.seeds)
    jobs = [Job(n.proxy, problem.data_settings, replace(fresh, seed=s, repeats=1)) for n in networks for s in seeds]
    print(f"training {len(networks)} networks again from seeds {seeds[0]}-{seeds[-1]}, {fresh.epochs} epochs "
          f"({settings.longer}x the trials'), {workers} worker(s)", file=sys.stderr, flush=True)
    bar = tqdm(total=len(jobs), desc="retraining", file=sys.stderr, dynamic_ncols=True)
    outcomes = train_all(jobs, workers, lambda i, o: bar.update(1))
    bar.close()
    out = []
    for k, n in enumerate(networks):
        runs = outcomes[k * len(seeds):(k + 1) * len(seeds)]
        accs = tuple(r.accuracy if isinstance(r, TrainResult) else math.nan for r in runs)
        out.append(replace(n, accuracies=accs))
    return out


def plot(path: Path, comparisons: Sequence[Comparison], base: Network) -> None:
    """Accuracy against latency: the searched networks and the width-scaled base, with their spread."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5), dpi=120)
    for key, label, color in (("searched", "searched (Pareto front, best within each budget)", "tab:orange"),
                              ("scaled", "base width-scaled to the same latency", "tab:blue")):
        nets = [getattr(c, key) for c in comparisons]
        ax.errorbar([n.latency.median_ms for n in nets], [n.mean for n in nets], yerr=[n.std for n in nets],
                    fmt="-o", ms=5, capsize=3, color=color, label=label)
    for c in comparisons:
        ax.axvline(c.budget_ms, color="tab:red", ls=":", lw=1)
    ax.scatter([base.latency.median_ms], [base.mean], marker="s", s=60, color="black", zorder=5, label=base.label)
    ax.set_xlabel("latency (ms, re-measured side by side)")
    ax.set_ylabel("accuracy (mean ± std over fresh seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


COLUMNS = ("budget", "network", "latency (ms)", "p10-p90 (ms)", "accuracy (mean ± std)", "seeds",
           "searched - scaled", "verdict", "MACs (M)", "params (M)")


def _row(budget: str, n: Network, diff: str, verdict: str) -> dict[str, Any]:
    cost = count(n.spec)
    assert n.latency is not None
    values = (budget, n.label, f"{n.latency.median_ms:.2f}", f"{n.latency.p10_ms:.2f}-{n.latency.p90_ms:.2f}",
              f"{n.mean:.4f} ± {n.std:.4f}", len(n.accuracies), diff, verdict, f"{cost.macs / 1e6:.1f}",
              f"{cost.params / 1e6:.2f}")
    return dict(zip(COLUMNS, values))


def tables(comparisons: Sequence[Comparison], base: Network) -> list[dict[str, Any]]:
    """Two rows per budget (the searched network, then the width-scaled base at its latency) and the base."""
    rows = []
    for c in comparisons:
        budget = f"{c.fraction:g}x ({c.budget_ms:.2f} ms)"
        rows.append(_row(budget, c.searched, f"{c.difference:+.4f} ± {c.standard_error:.4f}", c.verdict))
        rows.append(_row(budget, c.scaled, f"(latency {c.latency_ratio:.3f}x)", ""))
    rows.append(_row("-", base, "", ""))
    return rows


def set_up(search: DictConfig, settings: Settings, out_dir: Path) -> Problem:
    """The problem, its budget the largest budget's multiple of the base's latency measured here
    alone (or the one a resumed study was searched with: the base, re-measured, would move it)."""
    strategy, trainer = _search_parts(search, settings)
    probe = make_problem(search, strategy, trainer)
    first = probe.measure(probe.space.base)
    problem = probe.with_budget(recorded_budget(search, out_dir) or max(settings.budgets) * first.median_ms * (1 + settings.slack))
    print(f"base {problem.space.base.name}: {first.median_ms:.2f} ms on {describe(first.fingerprint)}; budgets "
          f"{', '.join(f'{f:g}x' for f in sorted(settings.budgets))} of it; one Pareto search of {settings.n_trials} "
          f"trials on {settings.workers} worker(s) within {problem.budget_ms:.2f} ms ({settings.slack:.0%} slack: the "
          "workers time their trials while the other trains)", flush=True)
    return problem


def choose(problem: Problem, study: optuna.Study, settings: Settings) -> tuple[float, dict[int, float], dict[float, FrozenTrial]]:
    """The base's latency re-measured alone, every trial's as a multiple of it, and for each budget
    the most accurate trial within it (a budget no trial is within is left out, with a message)."""
    base_latency, ratios = latency_ratios(problem, study)
    base_ms = base_latency.median_ms
    chosen = {}
    for fraction in sorted(settings.budgets):
        trial = best_within(problem, study, ratios, fraction)
        if trial is None:
            print(f"{PROG}: no trial within {fraction:g}x the base ({fraction * base_ms:.2f} ms); that budget is left out",
                  file=sys.stderr)
        else:
            chosen[fraction] = trial
    if not chosen:
        raise SpecError(f"no trial of the search is within any budget ({', '.join(f'{f:g}x' for f in settings.budgets)} "
                        f"the base's latency): nothing to compare; more n_trials, or larger budgets")
    return base_ms, ratios, chosen


def compare(problem: Problem, settings: Settings, chosen: Mapping[float, FrozenTrial], base_ms: float
            ) -> tuple[list[Comparison], Network]:
    """Each chosen trial against the base width-scaled to its latency, both trained again from the
    same fresh seeds and re-measured side by side with the base."""
    networks: dict[tuple[str, int], Network] = {}  # ("searched" | "scaled" | "base", trial): a trial chosen twice is compared once
    widths: dict[int, float] = {}
    for trial in chosen.values():
        if trial.number in widths:
            continue
        point = problem.candidate(trial.params)
        found = width_matching(problem, point.spec, settings.tolerance)
        if found is None:
            print(f"{PROG}: even the base at width 0.1 is slower than trial {trial.number}; it is left out", file=sys.stderr)
            continue
        widths[trial.number] = found[0]
        scaled = problem.base_at_width(found[0])
        networks[("searched", trial.number)] = Network(f"searched (trial {trial.number})", point.spec, point.proxy)
        networks[("scaled", trial.number)] = Network(f"base x width {found[0]:g}", scaled.spec, scaled.proxy)
    base = problem.base_at_width(1.0)
    networks[("base", -1)] = Network(f"base {problem.space.base.name}", base.spec, base.proxy)
    trained = retrain(problem, list(networks.values()), settings, settings.workers)
    timed = problem.remeasure([n.spec for n in trained])
    done = {key: replace(n, latency=t) for key, n, t in zip(networks, trained, timed, strict=True)}
    comparisons = [Comparison(f, f * base_ms, t.number, widths[t.number], done[("searched", t.number)],
                              done[("scaled", t.number)]) for f, t in chosen.items() if t.number in widths]
    return comparisons, done[("base", -1)]


def write_results(out_dir: Path, problem: Problem, study: optuna.Study, settings: Settings, comparisons: list[Comparison],
                  base: Network, base_ms: float, ratios: Mapping[int, float], seconds: tuple[float, float]) -> dict[str, Any]:
    """benchmark.csv, benchmark.png, benchmark.md and benchmark.json; ``base_ms``: the base's latency
    the budgets are multiples of; ``seconds``: (in all, searching)."""
    rows = tables(comparisons, base)
    write_csv(out_dir / "benchmark.csv", COLUMNS, rows)
    plot(out_dir / "benchmark.png", comparisons, base)
    wins = sum(c.verdict == "search better" for c in comparisons)
    assert base.latency is not None and problem.data is not None
    data, train = problem.data, problem.evaluator.settings
    lines = [
        f"# Search against width-scaling at the same latency: {problem.space.name} on {data.name}", "",
        f"- **latency**: re-measured side by side on {describe(base.latency.fingerprint)}; budgets are "
        f"{', '.join(f'{f:g}x' for f in sorted(settings.budgets))} of the base's {base_ms:.2f} ms, applied to every "
        "trial re-measured side by side with the base",
        f"- **search**: NSGA-II, {len(study.trials)} trials on {settings.workers} worker(s), constraint "
        f"{problem.budget_ms:.2f} ms; each trial trains {train.epochs} epochs ({data.name}, {len(data.train_y)} images at "
        f"{data.size}x{data.size})",
        f"- **comparison**: both networks of a budget trained again from the same {settings.fresh_seeds} fresh seeds, "
        f"{settings.longer}x the trials' epochs; the difference is the paired mean ± its standard error, "
        "'search better' beyond 2 standard errors",
        f"- **running time**: {seconds[0] / 60:.1f} min ({seconds[1] / 60:.1f} min searching)", "",
        markdown_table(COLUMNS, [list(r.values()) for r in rows]),
        f"The search beat width-scaling by more than 2 standard errors at {wins} of {len(comparisons)} budgets.", "",
    ]
    write_atomic(out_dir / "benchmark.md", "\n".join(lines))
    summary = {
        "space": problem.space.name, "data": data.name, "base_ms": base_ms, "seconds": seconds[0],
        "search_seconds": seconds[1], "trials": len(study.trials), "wins": wins,
        "latency_ratios": ratios,  # completed trial -> its re-measured latency / the base's
        "comparisons": [{
            "fraction": c.fraction, "budget_ms": c.budget_ms, "trial": c.trial, "width": c.width,
            "searched": {"accuracies": c.searched.accuracies, "latency": c.searched.latency.to_dict()},  # type: ignore[union-attr]
            "scaled": {"accuracies": c.scaled.accuracies, "latency": c.scaled.latency.to_dict()},  # type: ignore[union-attr]
            "difference": c.difference, "standard_error": c.standard_error, "verdict": c.verdict,
            "latency_ratio": c.latency_ratio,
        } for c in comparisons],
        "base": {"accuracies": base.accuracies, "latency": base.latency.to_dict()},
    }
    write_json(out_dir / "benchmark.json", summary)
    print("\n".join(lines[-3:]))
    return summary


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """The whole benchmark; raises SpecError for bad input."""
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings, search = load(cfg)
    problem = set_up(search, settings, out_dir)
    study = run_search(problem, search, settings, out_dir)
    searched = time.perf_counter() - started
    base_ms, ratios, chosen = choose(problem, study, settings)
    comparisons, base = compare(problem, settings, chosen, base_ms)
    seconds = time.perf_counter() - started
    summary = write_results(out_dir, problem, study, settings, comparisons, base, base_ms, ratios, (seconds, searched))
    print(f"benchmark took {seconds / 60:.1f} min; wrote {out_dir}")
    return summary


def main() -> None:
    hydra_command(PROG, "benchmark", run,
                  lambda out_dir: f"the search's study is in {out_dir} (study_name= and storage= resume it)")()


if __name__ == "__main__":
    main()
