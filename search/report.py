"""What a search leaves in its run directory, and the sweep table of ``python -m search -m``.

* ``best.yaml``: the best architecture as its base's table, the choices in the rows they changed
  (``python -m archgen spec=best.yaml``; every knob applies to it);
* ``trials.csv``: every trial of the study, its parameters, figures and state (a failed trial
  with its reason);
* ``pareto.png``: latency against score for every completed trial (and a pruned one's score
  when it was stopped), the Pareto front, the budget line, the base network and the base
  width-scaled to the budget;
* ``history.png``: Optuna's optimisation history (``optuna.visualization.matplotlib``);
* ``intermediate.png``: with a pruner, each trial's value after every epoch (pruned ones stop early);
* ``report.md``: the best found against the base and the width-scaled base (MnasNet's
  comparison, Sec. 5), every latency re-measured on this machine;
* ``summary.json``: the figures a sweep aggregates into one table of the best per budget.
"""

from __future__ import annotations

import io
import json
import statistics
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from archgen.cost.latency import Latency, describe
from archgen.fileio import write_atomic, write_csv
from archgen.report import SweepTable, job_order, markdown_table

from .trials import fail_reason


SUMMARY = "summary.json"


def pyplot() -> Any:
    """matplotlib's pyplot with the file-only backend (no display, whatever the environment
    says), imported when a figure is drawn: a command that stops at bad input does not pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Entry:
    """One network of the report: its latency re-measured here, its score and costs."""

    label: str
    latency: Latency
    score: float
    macs: int
    params: int
    budget_ms: float
    fresh: tuple[float, ...] = ()  # scores from seeds no trial used (search.baselines.fresh_scores)

    @property
    def meets(self) -> bool:
        return self.latency.median_ms <= self.budget_ms

    @property
    def fresh_mean(self) -> float | None:
        return statistics.fmean(self.fresh) if self.fresh else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency"] = self.latency.to_dict()
        d["meets_budget"] = self.meets
        return d


def write_trials(path: Path, study: optuna.Study, metric: str, own: Sequence[str] = ()) -> None:
    """``trials.csv``: every trial's number, state, score, latency, costs, failure reason and parameters;
    ``own``: the evaluator's figures (``Evaluator.columns``), after the score."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({p for t in trials for p in t.params}, key=_param_order)
    columns = ["number", "state", metric, *own, "latency_ms", "value", "macs", "num_params", "eval_seconds",
               "images_per_s", "pruned_at_epoch", "pruned_accuracy", "fail_reason", "iteration", "change", "worker", *names]
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name, **t.user_attrs, **t.params}
        if t.state == TrialState.FAIL:
            row["fail_reason"] = fail_reason(t, trials)
        if t.values is not None:
            row["value"] = t.values[0] if len(t.values) == 1 else t.values
        rows.append(row)
    write_csv(path, columns, rows)


def _param_order(name: str) -> tuple[int, int, str]:
    parts = name.split("_")
    stage = int(parts[0][1:]) if parts[0][1:].isdigit() else 0
    block = int(parts[1][1:]) if len(parts) > 2 and parts[1].startswith("b") and parts[1][1:].isdigit() else -1
    return stage, block, name


def plot_pareto(
    path: Path, trials: Sequence[FrozenTrial], metric: str, budget_ms: float, marks: Mapping[str, tuple[float, float]],
    front: Sequence[FrozenTrial],
) -> None:
    """Latency vs score of the completed trials, the front, the budget and the marked networks."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5), dpi=120)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    ax.scatter([t.user_attrs["latency_ms"] for t in done], [t.user_attrs[metric] for t in done], s=14, alpha=0.5,
               color="tab:blue", label="trials")
    if front:
        ax.plot([t.user_attrs["latency_ms"] for t in front], [t.user_attrs[metric] for t in front], "-o", ms=4,
                color="tab:orange", label="Pareto front (within budget)")
    stopped = [t for t in trials if t.state == TrialState.PRUNED and "pruned_accuracy" in t.user_attrs]
    if stopped:
        ax.scatter([t.user_attrs["latency_ms"] for t in stopped], [t.user_attrs["pruned_accuracy"] for t in stopped],
                   s=18, marker="x", color="tab:gray", alpha=0.7, label="pruned (accuracy when stopped)")
    ax.axvline(budget_ms, color="tab:red", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    for (label, (lat, score)), marker in zip(marks.items(), ("*", "s", "D", "^")):
        ax.scatter([lat], [score], marker=marker, s=110, edgecolor="black", zorder=5, label=label)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def plot_history(path: Path, study: optuna.Study, metric: str, objective: str) -> None:
    """Optuna's optimisation history: the objective (named ``objective``) per trial and the best so far."""
    pyplot()  # the backend, before Optuna draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the matplotlib backend is "experimental"
        if len(study.directions) == 1:
            ax = optuna.visualization.matplotlib.plot_optimization_history(study, target_name=objective)
        else:
            ax = optuna.visualization.matplotlib.plot_optimization_history(
                study, target=lambda t: t.user_attrs[metric], target_name=metric
            )
    fig = ax.get_figure()
    fig.set_size_inches(7, 4.5)
    fig.tight_layout()
    save_figure(fig, path)


def plot_intermediate(path: Path, study: optuna.Study, objective: str) -> None:
    """Optuna's per-epoch values of every trial that reported (pruned ones stop early)."""
    pyplot()  # the backend, before Optuna draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_intermediate_values(study)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{objective} after the epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend = ax.get_legend()
    if legend is not None and len(ax.get_lines()) > 12:  # one entry a trial: past a dozen the legend buries the plot
        legend.remove()
    fig = ax.get_figure()
    fig.set_size_inches(7, 4.5)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """A figure as a PNG file, written atomically; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")  # "tight": Optuna puts its legend outside the axes
    pyplot().close(fig)
    write_atomic(path, buf.getvalue())


def report_md(
    *, title: str, settings: Mapping[str, str], entries: Sequence[Entry], metric: str, best: FrozenTrial | None,
    study: optuna.Study, budget_ms: float, front: Sequence[FrozenTrial], notes: Sequence[str],
) -> str:
    """The comparison a user acts on, in Markdown."""
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in settings.items()]
    lines.append("")
    if entries:
        fp = entries[0].latency.fingerprint
        lines += [f"Latencies re-measured at the end on {describe(fp)} (median of {entries[0].latency.repeats} runs).", ""]
        seeds = max(len(e.fresh) for e in entries)
        rows = [
            (e.label, f"{e.latency.median_ms:.2f}", f"{e.latency.p10_ms:.2f}-{e.latency.p90_ms:.2f}",
             "yes" if e.meets else "**no**", f"{e.score:.4f}", *([_mean_std(e.fresh)] if seeds else []),
             f"{e.macs / 1e6:.1f}", f"{e.params / 1e6:.2f}")
            for e in entries
        ]
        scores = (f"{metric} (search)", f"{metric}, {seeds} fresh seeds") if seeds else (metric,)
        lines.append(markdown_table(("network", "latency (ms)", "p10-p90 (ms)", f"meets {budget_ms:g} ms", *scores,
                                     "MACs (M)", "params (M)"), rows))
        if seeds:
            lines += [f"*{metric} (search)*: the one evaluation the search ranked by. The best found is the highest "
                      "of many such noisy figures, so it flatters the best against the base networks; "
                      f"*{metric}, {seeds} fresh seeds*: each network trained again from seeds no trial used "
                      "(mean and standard deviation), the figure to compare them by.", ""]
    if best is not None:
        lines += [f"## Best found: trial {best.number}", "", "Written as `best.yaml`, its base's table with the choices in "
                  "the rows they changed; build it with `python -m archgen spec=best.yaml` (every knob applies: "
                  "`model.num_classes=`, `model.input_size=`, `model.width_mult=`...).", ""]
        lines.append(markdown_table(("parameter", "value"), [(k, v) for k, v in sorted(best.params.items(), key=lambda kv: _param_order(kv[0]))]))
    if front:
        lines += ["## Pareto front within the budget", ""]
        lines.append(markdown_table(("trial", "latency (ms)", metric), [
            (t.number, f"{t.user_attrs['latency_ms']:.2f}", f"{t.user_attrs[metric]:.4f}") for t in front
        ]))
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        lines += ["## Failed trials", ""]
        lines.append(markdown_table(("trial", "reason"), [(t.number, fail_reason(t, trials)) for t in failed]))
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


# -- python -m search -m ... : one table of the best per job --------------------------------------

SWEEP_COLUMNS = ("job", "space", "strategy", "budget_ms", "pruner", "trials", "complete", "pruned_early", "best_trial", "latency_ms", "meets_budget", "metric", "score",
                 "fresh_score", "base_latency_ms", "base_score", "base_fresh_score", "scaled_width", "scaled_latency_ms",
                 "scaled_score", "scaled_fresh_score")


def aggregate(sweep_dir: Path) -> list[dict[str, Any]]:
    """Collect every job's ``summary.json`` into ``best_per_budget.csv`` and ``.md`` in the sweep dir."""
    rows = []
    # any depth: a job dir named after a space=path/to/space.yaml override holds folders
    for path in sorted(sweep_dir.rglob(SUMMARY), key=lambda p: job_order(str(p.parent.relative_to(sweep_dir)))):
        s = json.loads(path.read_text())
        rows.append({"job": str(path.parent.relative_to(sweep_dir)), **{k: s.get(k, "") for k in SWEEP_COLUMNS if k != "job"}})
    rows.sort(key=lambda r: (r["space"], r["strategy"], r["budget_ms"]))
    write_csv(sweep_dir / "best_per_budget.csv", SWEEP_COLUMNS, rows)
    write_atomic(sweep_dir / "best_per_budget.md", markdown_table(SWEEP_COLUMNS, [[_fmt(r[c]) for c in SWEEP_COLUMNS] for r in rows]))
    return rows


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = f"{statistics.fmean(values):.4f}"
    return f"{mean} ± {statistics.stdev(values):.4f}" if len(values) > 1 else mean


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class AggregateBest(SweepTable):
    """Every ``python -m search`` job of a sweep in one table of the best per job."""

    files = ("best_per_budget.csv", "best_per_budget.md")
    aggregate = staticmethod(aggregate)
