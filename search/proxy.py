"""Does the accuracy proxy discriminate? Spread and rank stability over random architectures.

A search is only as good as the figure it ranks by. For ``samples`` random points of a space
this trains each proxy network twice (two seeds) and scores it with NASWOT, then reports:

* the spread of the accuracies (min, median, max, standard deviation): a proxy whose
  accuracies all sit within the seed noise cannot guide a search;
* Kendall's tau between the two seeds' accuracies: how stable the ranking is;
* Kendall's tau between NASWOT and the (first seed's) trained accuracy: whether the
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

from .data import DataSettings, Dataset, load_data
from .evaluate import NaswotSettings, TrainSettings, naswot, train

PROG = "search.proxy"


@dataclass(frozen=True)
class Row:
    """One architecture: its two trained accuracies and its NASWOT score."""

    index: int
    accuracy: float
    accuracy_reseeded: float
    naswot: float


@dataclass(frozen=True)
class ProxyReport:
    rows: tuple[Row, ...]
    tau_seeds: float
    tau_naswot: float

    @property
    def spread(self) -> dict[str, float]:
        acc = [r.accuracy for r in self.rows]
        return {"min": min(acc), "median": statistics.median(acc), "max": max(acc), "std": statistics.stdev(acc)}

    def __str__(self) -> str:
        s = self.spread
        return (
            f"accuracy over {len(self.rows)} architectures: min {s['min']:.4f}, median {s['median']:.4f}, "
            f"max {s['max']:.4f}, std {s['std']:.4f}; Kendall's tau between seeds {self.tau_seeds:.3f}, "
            f"NASWOT vs training {self.tau_naswot:.3f}"
        )


def proxy_study(
    space: Space, data: Dataset, train_settings: TrainSettings, naswot_settings: NaswotSettings, samples: int,
    seed: int = 0, progress: Callable[[Row], None] | None = None,
) -> ProxyReport:
    """Train ``samples`` random proxy networks with two seeds and score them with NASWOT."""
    if samples < 3:
        raise SpecError(f"samples must be an integer >= 3, got {samples!r}")
    rng = random.Random(seed)
    reseeded = dataclasses.replace(train_settings, seed=train_settings.seed + 1)
    rows = []
    for i in range(samples):
        spec = space.random(rng).spec
        row = Row(i, train(spec, data, train_settings).accuracy, train(spec, data, reseeded).accuracy,
                  naswot(spec, data, naswot_settings).score)
        rows.append(row)
        if progress is not None:
            progress(row)
    tau_seeds = kendalltau([r.accuracy for r in rows], [r.accuracy_reseeded for r in rows]).statistic
    tau_naswot = kendalltau([r.naswot for r in rows], [r.accuracy for r in rows]).statistic
    return ProxyReport(tuple(rows), float(tau_seeds), float(tau_naswot))


@hydra.main(config_path=str(CONF_DIR), config_name="proxy", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        sections = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "train", "naswot")}
        data = load_data(load_settings(DataSettings, "data", sections["data"]))
        space = Space(str(cfg.space), num_classes=data.num_classes, in_chans=data.in_chans, input_size=data.size)
        train_settings = load_settings(TrainSettings, "train", sections["train"])
        naswot_settings = load_settings(NaswotSettings, "naswot", sections["naswot"])
        header = f"{'#':>3}  {'acc seed ' + str(train_settings.seed):>12}  {'acc seed ' + str(train_settings.seed + 1):>12}  {'naswot':>9}"

        def show(r: Row) -> None:
            if r.index == 0:
                print(header)
            print(f"{r.index:>3}  {r.accuracy:>12.4f}  {r.accuracy_reseeded:>12.4f}  {r.naswot:>9.2f}", flush=True)

        report = proxy_study(space, data, train_settings, naswot_settings, cfg.samples, cfg.seed, progress=show)
    except SpecError as e:
        fail(PROG, str(e))
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    write_csv(out_dir / "proxy.csv", [f.name for f in dataclasses.fields(Row)], [dataclasses.asdict(r) for r in report.rows])
    write_json(out_dir / "proxy.json", {"samples": len(report.rows), "spread": report.spread,
                                        "tau_seeds": report.tau_seeds, "tau_naswot": report.tau_naswot})
    print(f"{report}; wrote {out_dir}")


if __name__ == "__main__":
    main()
