"""How good is the latency table? Predicted vs measured latency over random architectures.

NetAdapt (Yang et al. 2018, Fig. 3) and FBNet (Wu et al. 2019, Fig. 3) validate their lookup
tables by plotting predicted against measured latency of sampled networks. This module does
that on the machine at hand: it calibrates the table (``LatencyTable.calibrate``) on the
space's cheapest and dearest points and a few random ones, then draws random architectures
from the space (by default the MobileNetV3-Large space, kernel 3/5/7, expansion 3/4/6 and SE
on/off per block), predicts and measures each, and reports the mean absolute percentage error
and Kendall's tau (does the table rank networks as the clock does?).

    python -m archgen.validate                  # 30 architectures, 1 thread, CPU
    python -m archgen.validate samples=50 latency.threads=4
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from scipy.stats import kendalltau

from .builder import build
from .checks import is_int
from .checks import load_settings
from .cli import hydra_command
from .cost.latency import LatencySettings, describe, measure_side_by_side
from .cost.lut import Calibration, LatencyTable
from .errors import SpecError
from .fileio import write_csv, write_json
from .space import Space


@dataclass(frozen=True)
class Check:
    """One architecture: predicted and measured latency (ms)."""

    index: int
    predicted_ms: float
    measured_ms: float

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class Validation:
    """The table's accuracy over the sampled architectures."""

    checks: tuple[Check, ...]
    calibration: Calibration
    mape: float  # mean absolute percentage error, as a fraction
    kendall_tau: float

    def __str__(self) -> str:
        return f"MAPE {100 * self.mape:.1f} %, Kendall's tau {self.kendall_tau:.3f} over {len(self.checks)} architectures"


def validate(
    table: LatencyTable,
    space: Space,
    samples: int = 30,
    calibration: int = 3,
    seed: int = 0,
    progress: Callable[[Check], None] | None = None,
) -> Validation:
    """Calibrate ``table`` on the space's cheapest and dearest points and ``calibration`` random
    ones, then compare its predictions with measurements on ``samples`` other random points
    (distinct draws of one seeded generator)."""
    if samples < 2:
        raise ValueError("validate needs at least 2 samples to rank")
    rng = random.Random(seed)
    fit = [space.cheapest().spec, space.dearest().spec, *(space.random(rng).spec for _ in range(calibration))]
    specs = [space.random(rng).spec for _ in range(samples)]
    table.fill(fit + specs)  # every block into the table first, timed side by side
    # all timed side by side, so that the machine's drift during the run neither reorders the
    # samples nor shifts them against the calibration
    timed = measure_side_by_side([(build(s), s.in_chans, s.input_size) for s in fit + specs], table.settings)
    fitted = table.calibrate(fit, [t.median_ms for t in timed[: len(fit)]])
    checks = []
    for i, (spec, t) in enumerate(zip(specs, timed[len(fit):])):
        checks.append(Check(i, table.predict(spec).total_ms, t.median_ms))
        if progress is not None:
            progress(checks[-1])
    tau = kendalltau([c.predicted_ms for c in checks], [c.measured_ms for c in checks]).statistic
    return Validation(
        checks=tuple(checks),
        calibration=fitted,
        mape=statistics.fmean(abs(c.error) for c in checks),
        kendall_tau=float(tau),
    )


# -- python -m archgen.validate --------------------------------------------------------------

PROG = "archgen.validate"


def write_report(out_dir: Path, result: Validation, table: LatencyTable) -> None:
    """``validation.csv`` (one row per architecture) and ``validation.json`` (the figures)."""
    rows = [{"index": c.index, "predicted_ms": f"{c.predicted_ms:.4f}", "measured_ms": f"{c.measured_ms:.4f}",
             "error_pct": f"{100 * c.error:.2f}"} for c in result.checks]
    write_csv(out_dir / "validation.csv", ("index", "predicted_ms", "measured_ms", "error_pct"), rows)
    doc = {
        "mape": result.mape,
        "kendall_tau": result.kendall_tau,
        "samples": len(result.checks),
        "calibration": asdict(result.calibration),
        "fingerprint": table.fingerprint,
        "protocol": {"warmup": table.settings.warmup, "repeats": table.settings.repeats, "statistic": "median"},
        "table": table.describe(),
    }
    write_json(out_dir / "validation.json", doc)


def run(cfg: DictConfig, out_dir: Path) -> Validation:
    """Validate this machine's table on ``cfg.samples`` random points of ``cfg.space``, and write the report."""
    settings = load_settings(LatencySettings, "latency", OmegaConf.to_container(cfg.latency))  # type: ignore[arg-type]
    for key, minimum in (("samples", 2), ("calibration", 0)):
        if not is_int(cfg[key]) or cfg[key] < minimum:
            raise SpecError(f"{key} must be an integer >= {minimum}, got {cfg[key]!r}")
    if settings.table is not None:
        raise SpecError(f"latency.table={settings.table}: validation measures networks here, so it checks this "
                        "machine's table; a target's table is checked on the target")
    table = LatencyTable(settings, cfg.cache)
    space = Space(str(cfg.space))
    print(f"latency table {table.path} ({len(table)} blocks), {describe(table.fingerprint)}")
    print(f"{'#':>3}  {'predicted':>10}  {'measured':>10}  {'error':>7}")
    result = validate(
        table, space, cfg.samples, cfg.calibration, cfg.seed,
        progress=lambda c: print(f"{c.index:>3}  {c.predicted_ms:>7.2f} ms  {c.measured_ms:>7.2f} ms  {100 * c.error:>+6.1f}%"),
    )
    write_report(out_dir, result, table)
    c = result.calibration
    print(f"{result} (calibration: {c.scale:.3f} x blocks {c.overhead_ms:+.2f} ms, on {c.networks} networks); wrote {out_dir}")
    return result


def main() -> None:
    hydra_command(PROG, "validate", run, lambda out_dir: f"nothing was written to {out_dir}")()


if __name__ == "__main__":
    main()
