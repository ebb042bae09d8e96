"""Which accuracy proxy should a search rank by? Candidate protocols compared side by side.

A search is only as good as the figure it ranks by, and a cheap figure is only worth its cost
if it ranks architectures as a longer training would. ``python -m search.proxy`` draws
``samples`` random architectures of a space and, for every protocol (a way to train the proxy
network: how many images, epochs, resolution, augmentation, repeats), trains each architecture
twice from disjoint seeds. It also trains each architecture once with the **reference**: the
first protocol with ``longer`` times its epochs, from a seed no run of any protocol used. For every
protocol it reports:

* the spread of the accuracies (min, median, max, standard deviation) against the **seed
  noise** (the standard deviation of one evaluation about its architecture's own figure, from
  the two runs' differences): a proxy whose spread sits within its seed noise cannot guide a
  search;
* Kendall's tau between the two runs (accuracy, and validation loss): is the ranking stable?
* Kendall's tau between the first run and the reference: does one trial rank as the longer
  training does? With fewer than 20 architectures a tau moves by +-0.3 on its own, so both
  taus come with a bootstrap 95 % interval over the architectures;
* minutes per trial: one evaluation's wall time, as a search pays it.

NASWOT (Mellor et al. 2021), the training-free score, is ranked against the reference too.

    python -m search.proxy                                      # conf/proxy.yaml's protocols
    python -m search.proxy samples=20 'protocols={default: {}}' # one protocol, 20 architectures
    python -m search.proxy resume=outputs/proxy/<run>           # reuse an interrupted run's trainings

Every training is saved as it finishes (``evaluations.csv``), so a run that stops loses only
the trainings under way, and ``resume=`` takes up the rest.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy.stats import kendalltau

from archgen import SpecError
from archgen.checks import is_int
from archgen.checks import load_settings
from archgen.cli import hydra_command
from archgen.fileio import write_atomic, write_csv, write_json
from archgen.report import markdown_table
from archgen.space import Space

from .data import DataSettings, load_data
from .evaluators import TrialFailed
from .evaluators.naswot import NaswotSettings, naswot
from .evaluators.train import TrainSettings
from .parallel import Job, run_jobs

PROG = "search.proxy"
REFERENCE = "reference"
BOOTSTRAP = 1000  # resamples of the architectures for a tau's interval


@dataclass(frozen=True)
class Protocol:
    """A way to train the proxy network: data and training settings, and the overrides that made them."""

    name: str
    data: DataSettings
    train: TrainSettings
    overrides: Mapping[str, Any]  # {"data.limit": None, "train.epochs": 1}: what differs from the config's data.*, train.*

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_value(v)}" for k, v in self.overrides.items()) or "data.*, train.* as configured"


@dataclass(frozen=True)
class Evaluation:
    """One training of one architecture."""

    protocol: str
    arch: int
    run: int  # 0 and 1: the two seed sets; the reference has run 0 only
    seeds: str
    accuracy: float  # nan when the training diverged
    loss: float
    seconds: float
    key: str  # what was trained how: a resumed run reuses an evaluation only when this matches


def _value(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def make_protocols(data: Mapping[str, Any], train: Mapping[str, Any], protocols: Mapping[str, Any], compare: Sequence[str],
                   longer: int) -> list[Protocol]:
    """The protocols named in ``compare`` (each ``{data: {...}, train: {...}}`` over the config's sections),
    then the reference: the first of them trained ``longer`` times as many epochs."""
    if not isinstance(protocols, Mapping):
        raise SpecError("protocols must be a mapping of name -> {data: {...}, train: {...}} overrides")
    if isinstance(compare, str) or not isinstance(compare, Sequence) or not compare:
        raise SpecError(f"compare must be a non-empty list of protocol names, got {compare!r}")
    unknown = [c for c in compare if c not in protocols]
    if unknown:
        raise SpecError(f"compare: unknown protocol {unknown[0]!r}; known: {', '.join(sorted(protocols))}")
    if len(set(compare)) != len(compare):
        raise SpecError(f"compare names a protocol twice: {list(compare)}")
    if not (is_int(longer) and longer >= 1):
        raise SpecError(f"longer must be an integer >= 1 (the reference's epochs, x the first protocol's), got {longer!r}")
    out = []
    for name in compare:
        over = protocols[name]
        if name == REFERENCE:
            raise SpecError(f"protocols.{REFERENCE}: the name is taken by the longer training every protocol is ranked against")
        over = over or {}
        if not isinstance(over, Mapping) or any(k not in ("data", "train") for k in over):
            raise SpecError(f"protocols.{name} must be a mapping with data and/or train overrides, got {over!r}")
        flat = {f"{section}.{k}": v for section in ("data", "train") for k, v in (over.get(section) or {}).items()}
        try:
            d = load_settings(DataSettings, "data", {**data, **(over.get("data") or {})})
            t = load_settings(TrainSettings, "train", {**train, **(over.get("train") or {})})
        except SpecError as e:
            raise SpecError(f"protocols.{name}: {e}") from None
        out.append(Protocol(str(name), d, t, flat))
    first = out[0]
    # from a seed after every seed of both runs of every protocol: one seed shared with a run would
    # give the reference that run's initial weights, and a rank correlation it did not earn
    after = max(p.train.seed + 2 * p.train.repeats for p in out)
    reference = dataclasses.replace(first.train, seed=after, repeats=1, epochs=first.train.epochs * longer)
    overrides = {**first.overrides, "train.epochs": reference.epochs, "train.repeats": 1}
    out.append(Protocol(REFERENCE, first.data, reference, overrides))
    return out


def _key(protocol: Protocol, params: Mapping[str, Any], train: TrainSettings) -> str:
    doc = {"data": dataclasses.asdict(protocol.data), "train": dataclasses.asdict(train), "params": dict(sorted(params.items()))}
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b; nan when either side is constant or has a nan."""
    if len(x) < 2 or any(math.isnan(v) for v in (*x, *y)):
        return math.nan
    return float(kendalltau(x, y).statistic)


def tau_interval(x: Sequence[float], y: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """A bootstrap 95 % interval of Kendall's tau: architectures resampled with replacement."""
    rng = np.random.default_rng(seed)
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    draws = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(xs), len(xs))
        t = tau(xs[idx].tolist(), ys[idx].tolist())
        if not math.isnan(t):
            draws.append(t)
    if not draws:
        return math.nan, math.nan
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


@dataclass(frozen=True)
class ProtocolReport:
    """One protocol's figures over the architectures that every training of it and the reference completed."""

    protocol: Protocol
    first: tuple[float, ...]  # accuracy of run 0, per architecture
    second: tuple[float, ...]  # of run 1
    first_loss: tuple[float, ...]
    second_loss: tuple[float, ...]
    reference: tuple[float, ...]  # the reference's accuracy of the same architectures
    seconds: tuple[float, ...]  # of every evaluation of the protocol

    @property
    def samples(self) -> int:
        return len(self.first)

    @property
    def spread(self) -> dict[str, float]:
        a = self.first
        return {"min": min(a), "median": statistics.median(a), "max": max(a), "std": statistics.stdev(a) if len(a) > 1 else 0.0}

    @property
    def seed_noise(self) -> float:
        """Standard deviation of one evaluation about its architecture's figure: the runs are independent
        draws, so their difference has sqrt(2) times it."""
        return statistics.fmean((a - b) ** 2 for a, b in zip(self.first, self.second)) ** 0.5 / 2**0.5

    @property
    def tau_seeds(self) -> float:
        return tau(self.first, self.second)

    @property
    def tau_seeds_loss(self) -> float:
        return tau(self.first_loss, self.second_loss)

    @property
    def tau_reference(self) -> float:
        return tau(self.first, self.reference)

    @property
    def minutes_per_trial(self) -> float:
        return statistics.fmean(self.seconds) / 60

    def summary(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.name, "settings": self.protocol.label, "samples": self.samples,
            "spread": self.spread, "seed_noise": self.seed_noise,
            "tau_seeds": self.tau_seeds, "tau_seeds_interval": tau_interval(self.first, self.second),
            "tau_seeds_loss": self.tau_seeds_loss,
            "tau_reference": self.tau_reference, "tau_reference_interval": tau_interval(self.first, self.reference),
            "minutes_per_trial": self.minutes_per_trial,
        }


def report(protocols: Sequence[Protocol], evaluations: Sequence[Evaluation]) -> list[ProtocolReport]:
    """Each protocol's figures from the evaluations so far (architectures with a missing or diverged training left out)."""
    by = {(e.protocol, e.arch, e.run): e for e in evaluations}
    archs = sorted({e.arch for e in evaluations})
    out = []
    for p in protocols:
        if p.name == REFERENCE:
            continue
        keep = [a for a in archs if all((q, a, r) in by and not math.isnan(by[q, a, r].accuracy)
                                        for q, r in ((p.name, 0), (p.name, 1), (REFERENCE, 0)))]
        if len(keep) < 2:
            continue
        out.append(ProtocolReport(
            p,
            first=tuple(by[p.name, a, 0].accuracy for a in keep), second=tuple(by[p.name, a, 1].accuracy for a in keep),
            first_loss=tuple(by[p.name, a, 0].loss for a in keep), second_loss=tuple(by[p.name, a, 1].loss for a in keep),
            reference=tuple(by[REFERENCE, a, 0].accuracy for a in keep),
            seconds=tuple(e.seconds for e in evaluations if e.protocol == p.name),
        ))
    return out


def naswot_tau(space: Space, params: Sequence[Mapping[str, Any]], data: DataSettings, settings: NaswotSettings,
               reference: Mapping[int, float]) -> tuple[float, int]:
    """Kendall's tau between NASWOT and the reference's accuracy, and over how many architectures."""
    dataset = load_data(data)
    proxy = space.at(num_classes=dataset.num_classes, in_chans=dataset.in_chans, input_size=dataset.size)
    archs = sorted(a for a in reference if not math.isnan(reference[a]))
    scores = [naswot(proxy.apply(params[a]), dataset, settings).score for a in archs]
    return tau(scores, [reference[a] for a in archs]), len(archs)


def table(reports: Sequence[ProtocolReport], longer: int) -> str:
    """The comparison as Markdown, one row per protocol."""
    rows = []
    for r in reports:
        s = r.summary()
        ci_s, ci_r = s["tau_seeds_interval"], s["tau_reference_interval"]
        rows.append((
            r.protocol.name, r.protocol.label, r.samples,
            f"{s['spread']['min']:.4f}-{s['spread']['max']:.4f} ({s['spread']['std']:.4f})", f"{r.seed_noise:.4f}",
            f"{r.tau_seeds:.2f} [{ci_s[0]:.2f}, {ci_s[1]:.2f}]", f"{r.tau_seeds_loss:.2f}",
            f"{r.tau_reference:.2f} [{ci_r[0]:.2f}, {ci_r[1]:.2f}]", f"{r.minutes_per_trial:.2f}",
        ))
    return markdown_table(("protocol", "settings", "archs", "accuracy min-max (std)", "seed noise",
                           "tau seeds [95% CI]", "tau seeds (loss)", f"tau vs {longer}x longer [95% CI]",
                           "min/trial"), rows)


def _load_evaluations(folder: str | Path) -> list[Evaluation]:
    path = Path(folder) / "evaluations.csv"
    if not path.is_file():
        raise SpecError(f"resume={folder}: no evaluations.csv there (the folder of an earlier python -m search.proxy run)")
    try:
        with path.open(newline="") as f:
            return [Evaluation(r["protocol"], int(r["arch"]), int(r["run"]), r["seeds"], float(r["accuracy"]),
                               float(r["loss"]), float(r["seconds"]), r["key"]) for r in csv.DictReader(f)]
    except (KeyError, ValueError, TypeError) as e:
        raise SpecError(f"resume={folder}: evaluations.csv is not one this command wrote ({e})") from None


def compare(
    space: Space, protocols: Sequence[Protocol], samples: int, seed: int = 0, workers: int = 1,
    previous: Sequence[Evaluation] = (), saved: Callable[[list[Evaluation]], None] | None = None,
) -> tuple[list[dict[str, Any]], list[Evaluation]]:
    """Train ``samples`` random architectures of ``space`` with every protocol (twice, from disjoint
    seeds; the reference once); evaluations in ``previous`` with the same key are reused. Returns the
    architectures' choices and every evaluation; ``saved(evaluations)`` is called after each one."""
    if not (is_int(samples) and samples >= 3):
        raise SpecError(f"samples must be an integer >= 3, got {samples!r}")
    if not (is_int(workers) and workers >= 1):
        raise SpecError(f"workers must be an integer >= 1, got {workers!r}")
    rng = random.Random(seed)
    params = [dict(space.random(rng).params) for _ in range(samples)]
    spaces: dict[tuple[int, int, int], Space] = {}
    known = {e.key: e for e in previous}
    done: list[Evaluation] = []
    jobs: list[tuple[Job, Evaluation]] = []
    # architecture by architecture, so that an interrupted run has whole rows
    for a, choice in enumerate(params):
        for p in protocols:
            dataset = load_data(p.data)
            shape = (dataset.num_classes, dataset.in_chans, dataset.size)
            if shape not in spaces:
                spaces[shape] = space.at(num_classes=shape[0], in_chans=shape[1], input_size=shape[2])
            runs = [p.train] if p.name == REFERENCE else [p.train, p.train.after()]
            for r, settings in enumerate(runs):
                key = _key(p, choice, settings)
                stub = Evaluation(p.name, a, r, settings.seeds_label, math.nan, math.nan, 0.0, key)
                if key in known:
                    done.append(dataclasses.replace(known[key], protocol=p.name, arch=a, run=r))  # a protocol renamed keeps its trainings
                else:
                    jobs.append((Job(spaces[shape].apply(choice), p.data, settings), stub))
    if saved is not None and done:
        saved(list(done))
    for i, outcome in run_jobs([job for job, _ in jobs], workers):
        stub = jobs[i][1]
        if isinstance(outcome, TrialFailed):
            e = stub
        else:
            e = dataclasses.replace(stub, accuracy=outcome.accuracy, loss=outcome.loss, seconds=outcome.seconds)
        done.append(e)
        print(f"arch {e.arch:>3}  {e.protocol:<16} run {e.run} ({e.seeds}): accuracy {e.accuracy:.4f}, "
              f"loss {e.loss:.4f}, {e.seconds:.0f} s", flush=True)
        if saved is not None:
            saved(list(done))
    return params, done


def run(cfg: DictConfig, out_dir: Path) -> list[ProtocolReport]:
    """The comparison ``conf/proxy.yaml`` describes, written into ``out_dir``; raises SpecError for bad input."""
    sections = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "train", "naswot", "protocols", "compare")}
    protocols = make_protocols(sections["data"], sections["train"], sections["protocols"], sections["compare"], cfg.longer)
    naswot_settings = load_settings(NaswotSettings, "naswot", sections["naswot"])
    space = Space(str(cfg.space))
    previous = _load_evaluations(cfg.resume) if cfg.get("resume") else []
    for p in protocols:
        load_data(p.data)  # every dataset checked before the first training
    print(f"{len(protocols) - 1} protocols x 2 seed sets + the reference ({protocols[0].name} x{cfg.longer} epochs) "
          f"on {cfg.samples} architectures of space {space.name}, {cfg.workers} worker(s)", flush=True)

    def save(evaluations: list[Evaluation]) -> None:
        write_csv(out_dir / "evaluations.csv", [f.name for f in dataclasses.fields(Evaluation)],
                  [dataclasses.asdict(e) for e in evaluations])

    params, evaluations = compare(space, protocols, cfg.samples, cfg.seed, cfg.workers, previous, save)
    reports = report(protocols, evaluations)
    reference = {e.arch: e.accuracy for e in evaluations if e.protocol == REFERENCE}
    naswot_figure = naswot_tau(space, params, protocols[0].data, naswot_settings, reference)
    md = table(reports, cfg.longer)
    write_json(out_dir / "proxy.json", {
        "space": space.name, "samples": cfg.samples, "seed": cfg.seed, "longer": cfg.longer,
        "protocols": [r.summary() for r in reports], "architectures": params,
        "naswot": {"tau_reference": naswot_figure[0], "samples": naswot_figure[1]},
    })
    write_atomic(out_dir / "protocols.md", md + f"\nNASWOT vs the reference: tau {naswot_figure[0]:.2f} over "
                 f"{naswot_figure[1]} architectures.\n")
    print(md)
    print(f"NASWOT vs the reference: tau {naswot_figure[0]:.2f} over {naswot_figure[1]} architectures; wrote {out_dir}")
    return reports


def main() -> None:
    hydra_command(PROG, "proxy", run, lambda out_dir: (
        f"the trainings done are in {out_dir / 'evaluations.csv'} (resume={out_dir} takes up the rest)"))()


if __name__ == "__main__":
    main()
