"""Does the accuracy proxy discriminate? Spread and rank stability over random architectures.

A search is only as good as the figure it ranks by. For ``samples`` random points of a space
this evaluates each proxy network twice with the ``train`` evaluator, from disjoint seeds
(``train.seed`` onwards, then ``train.seed + train.repeats`` onwards), and scores it with
NASWOT, then reports:

* the spread of the accuracies (min, median, max, standard deviation) against the seed noise
  (the standard deviation of one evaluation's accuracy about the architecture's own, from the
  two evaluations' differences): a proxy whose accuracies all sit within the seed noise
  cannot guide a search;
* Kendall's tau between the two evaluations' accuracies, and between their validation losses
  (a finer figure than top-1 on a few hundred images): how stable the ranking is;
* Kendall's tau between NASWOT and the first evaluation's accuracy: whether the
  training-free score ranks as training does (Mellor et al. 2021 report tau for NAS-Bench).

    python -m search.proxy samples=20
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import hydra
from omegaconf import DictConfig, OmegaConf
from scipy.stats import kendalltau

from archgen import SpecError
from archgen.cli import fail, load_settings
from archgen.fileio import write_csv, write_json
from archgen.space import Space
from archgen.zoo import CONF_DIR

from .data import DataSettings, Dataset, is_int, load_data
from .evaluate import NaswotSettings, TrainSettings, naswot, train

PROG = "search.proxy"


@dataclass(frozen=True)
class Row:
    """One architecture: its two evaluations (accuracy, validation loss) and its NASWOT score."""

    index: int
    accuracy: float
    accuracy_reseeded: float
    loss: float
    loss_reseeded: float
    naswot: float


@dataclass(frozen=True)
class ProxyReport:
    rows: tuple[Row, ...]
    tau_seeds: float  # between the two evaluations' accuracies
    tau_seeds_loss: float  # between their validation losses
    tau_naswot: float  # between NASWOT and the first evaluation's accuracy

    @property
    def spread(self) -> dict[str, float]:
        acc = [r.accuracy for r in self.rows]
        return {"min": min(acc), "median": statistics.median(acc), "max": max(acc), "std": statistics.stdev(acc)}

    @property
    def seed_noise(self) -> float:
        """Standard deviation of one evaluation's accuracy about its architecture's: the two
        evaluations are independent draws, so their difference has sqrt(2) times it."""
        return statistics.fmean((r.accuracy - r.accuracy_reseeded) ** 2 for r in self.rows) ** 0.5 / 2**0.5

    def summary(self) -> dict[str, object]:
        return {"samples": len(self.rows), "spread": self.spread, "seed_noise": self.seed_noise,
                "tau_seeds": self.tau_seeds, "tau_seeds_loss": self.tau_seeds_loss, "tau_naswot": self.tau_naswot}

    def __str__(self) -> str:
        s = self.spread
        return (
            f"accuracy over {len(self.rows)} architectures: min {s['min']:.4f}, median {s['median']:.4f}, "
            f"max {s['max']:.4f}, std {s['std']:.4f} (seed noise {self.seed_noise:.4f}); Kendall's tau between "
            f"seeds {self.tau_seeds:.3f} (validation loss {self.tau_seeds_loss:.3f}), NASWOT vs training {self.tau_naswot:.3f}"
        )


def proxy_study(
    space: Space, data: Dataset, train_settings: TrainSettings, naswot_settings: NaswotSettings, samples: int,
    seed: int = 0, progress: Callable[[Row], None] | None = None,
) -> ProxyReport:
    """Evaluate ``samples`` random proxy networks twice, from disjoint seeds, and score them with NASWOT."""
    if not (is_int(samples) and samples >= 3):
        raise SpecError(f"samples must be an integer >= 3, got {samples!r}")
    rng = random.Random(seed)
    reseeded = train_settings.after()
    rows = []
    for i in range(samples):
        spec = space.random(rng).spec
        first, second = train(spec, data, train_settings), train(spec, data, reseeded)
        row = Row(i, first.accuracy, second.accuracy, first.loss, second.loss, naswot(spec, data, naswot_settings).score)
        rows.append(row)
        if progress is not None:
            progress(row)

    def tau(x: list[float], y: list[float]) -> float:
        return float(kendalltau(x, y).statistic)

    return ProxyReport(
        tuple(rows),
        tau_seeds=tau([r.accuracy for r in rows], [r.accuracy_reseeded for r in rows]),
        tau_seeds_loss=tau([r.loss for r in rows], [r.loss_reseeded for r in rows]),
        tau_naswot=tau([r.naswot for r in rows], [r.accuracy for r in rows]),
    )


@hydra.main(config_path=str(CONF_DIR), config_name="proxy", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        sections = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "train", "naswot")}
        data = load_data(load_settings(DataSettings, "data", sections["data"]))
        space = Space(str(cfg.space), num_classes=data.num_classes, in_chans=data.in_chans, input_size=data.size)
        train_settings = load_settings(TrainSettings, "train", sections["train"])
        naswot_settings = load_settings(NaswotSettings, "naswot", sections["naswot"])
        labels = [s.seeds_label for s in (train_settings, train_settings.after())]
        header = f"{'#':>3}  {'acc ' + labels[0]:>14}  {'acc ' + labels[1]:>14}  {'loss':>7}  {'loss':>7}  {'naswot':>9}"

        def show(r: Row) -> None:
            if r.index == 0:
                print(header)
            print(f"{r.index:>3}  {r.accuracy:>14.4f}  {r.accuracy_reseeded:>14.4f}  {r.loss:>7.4f}  "
                  f"{r.loss_reseeded:>7.4f}  {r.naswot:>9.2f}", flush=True)

        report = proxy_study(space, data, train_settings, naswot_settings, cfg.samples, cfg.seed, progress=show)
    except SpecError as e:
        fail(PROG, str(e))
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    write_csv(out_dir / "proxy.csv", [f.name for f in dataclasses.fields(Row)], [dataclasses.asdict(r) for r in report.rows])
    write_json(out_dir / "proxy.json", report.summary())
    print(f"{report}; wrote {out_dir}")


if __name__ == "__main__":
    main()
