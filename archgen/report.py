"""What a run shows and writes: the layer table, the summary, and the multirun table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hydra.experimental.callback import Callback

from .cost import ModelCost
from .cost.latency import Latency, describe
from .cost.lut import Prediction
from .fileio import write_atomic, write_csv, write_json
from .ir import fmt_shape
from .spec import ModelSpec

SUMMARY = "summary.json"
EXPANDED_SPEC = "spec.yaml"
AGG_COLUMNS = (
    "job", "model", "width_mult", "depth_mult", "input_size", "num_classes", "params", "macs",
    "latency_ms", "latency_p10_ms", "latency_p90_ms", "deploy_latency_ms", "env",
)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """Plain text table; ``align`` has one 'l' or 'r' per column (default: numbers right)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def layer_table(spec: ModelSpec, cost: ModelCost, lut: Prediction | None = None) -> str:
    """One line per block: index, name, type, input -> output shape, k, exp, SE, activation, stride,
    params, MACs, and with ``lut`` the block's latency from the lookup table."""
    headers = ["#", "block", "type", "input -> output", "k", "exp", "se", "nl", "s", "params", "MACs"]
    per_block = dict(lut.blocks) if lut is not None else {}
    rows = []
    for i, (b, c) in enumerate(zip(spec.blocks, cost.blocks)):
        shape = f"{fmt_shape(b.in_chs, b.in_size)} -> {fmt_shape(b.out_chs, b.out_size)}"
        row = [i, b.name, b.type, shape, b.kernel or "-", b.exp or "-", f"{b.se:g}" if b.se else "-", b.act or "-",
               b.stride, f"{c.params:,}", f"{c.macs:,}"]
        if lut is not None:
            row.append(f"{per_block[b.name]:.3f}")
        rows.append(row)
    if lut is not None:
        headers.append("LUT ms")
    return format_table(headers, rows, align="rllllllllrr" + "r" * (lut is not None))


def totals_line(spec: ModelSpec, cost: ModelCost) -> str:
    h, w = spec.input_size
    return (
        f"{spec.name}: {cost.params:,} params ({cost.params / 1e6:.2f} M), {cost.macs:,} MACs ({cost.macs / 1e6:.1f} M) "
        f"at {spec.in_chans}x{h}x{w}, width_mult {spec.width_mult:g}, depth_mult {spec.depth_mult:g}, "
        f"{len(spec.blocks)} blocks in {spec.num_stages} stages"
    )


def latency_lines(
    latency: Latency | None, deployed: Latency | None = None, lut: Prediction | None = None
) -> list[str]:
    """The latency figures of a run, each with the environment it was measured in."""
    lines = []
    if latency is not None:
        lines.append(f"latency: {latency} on {describe(latency.fingerprint)}")
    if deployed is not None:
        ratio = f", {deployed.median_ms / latency.median_ms:.2f}x the training form" if latency is not None else ""
        lines.append(f"latency, inference form: {deployed}{ratio}")
    if lut is not None:
        c = lut.calibration
        how = (f"{c.scale:.3f} x blocks {c.overhead_ms:+.2f} ms" if lut.calibrated
               else "the blocks' sum; calibrate the table with python -m archgen.validate")
        lines.append(f"latency, lookup table: {lut.total_ms:.2f} ms predicted ({how})")
    return lines


def summary(spec: ModelSpec, cost: ModelCost, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What ``summary.json`` holds: the spec's knobs and costs, plus ``extra`` (latency, export...)."""
    return {
        "model": spec.name,
        "source": spec.source,
        "params": cost.params,
        "macs": cost.macs,
        "input_size": list(spec.input_size),
        "in_chans": spec.in_chans,
        "num_classes": spec.num_classes,
        "width_mult": spec.width_mult,
        "depth_mult": spec.depth_mult,
        "dropout": spec.dropout,
        "num_blocks": len(spec.blocks),
        "feature_info": spec.feature_info(),
        **(extra or {}),
    }


def write_run(out_dir: Path, spec: ModelSpec, cost: ModelCost, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the expanded spec and the summary into a run directory; returns the summary."""
    s = summary(spec, cost, extra)
    write_atomic(out_dir / EXPANDED_SPEC, spec.to_yaml())
    write_json(out_dir / SUMMARY, s)
    return s


def aggregate(sweep_dir: Path) -> list[dict[str, Any]]:
    """Collect every job's summary under a sweep dir into ``summary.csv`` and ``summary.md`` there."""
    rows = []
    for path in sorted(sweep_dir.glob(f"*/{SUMMARY}"), key=lambda p: job_order(p.parent.name)):
        s = json.loads(path.read_text())
        h, w = s["input_size"]
        lat, dep = s.get("latency") or {}, s.get("deploy_latency") or {}
        rows.append(
            {"job": path.parent.name, "model": s["model"], "width_mult": s["width_mult"], "depth_mult": s["depth_mult"],
             "input_size": f"{h}x{w}", "num_classes": s["num_classes"], "params": s["params"], "macs": s["macs"],
             "latency_ms": lat.get("median_ms", ""), "latency_p10_ms": lat.get("p10_ms", ""),
             "latency_p90_ms": lat.get("p90_ms", ""), "deploy_latency_ms": dep.get("median_ms", ""),
             "env": describe(lat["fingerprint"]) if lat else ""}
        )
    write_csv(sweep_dir / "summary.csv", AGG_COLUMNS, rows)
    md_rows = [
        (r["job"], r["model"], r["width_mult"], r["depth_mult"], r["input_size"], r["num_classes"],
         f"{r['params'] / 1e6:.3f}", f"{r['macs'] / 1e6:.1f}", _ms(r["latency_ms"]),
         f"{_ms(r['latency_p10_ms'])}-{_ms(r['latency_p90_ms'])}" if r["latency_ms"] != "" else "",
         _ms(r["deploy_latency_ms"]), r["env"])
        for r in rows
    ]
    headers = ("job", "model", "width_mult", "depth_mult", "input_size", "num_classes", "params (M)", "MACs (M)",
               "latency (ms)", "p10-p90 (ms)", "inference form (ms)", "measured on")
    write_atomic(sweep_dir / "summary.md", markdown_table(headers, md_rows))
    return rows


def _ms(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else ""


def job_order(dirname: str) -> tuple[int, str]:
    head = dirname.split("_", 1)[0]
    return (int(head), dirname) if head.isdigit() else (1 << 30, dirname)


class SweepTable(Callback):
    """Hydra callback: at the end of a multirun, ``aggregate`` the jobs' summaries into the
    sweep directory's ``files`` (a subclass names both)."""

    files: tuple[str, ...]  # what aggregate writes, for the closing message
    aggregate: Callable[[Path], list[dict[str, Any]]]  # a staticmethod: sweep dir -> the table's rows

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = self.aggregate(sweep_dir)
        if rows:
            print(f"\n{len(rows)} jobs -> {', '.join(str(sweep_dir / f) for f in self.files)}")


class AggregateSummaries(SweepTable):
    """Every ``python -m archgen`` job of a multirun in one table (``summary.csv``, ``summary.md``)."""

    files = ("summary.csv", "summary.md")
    aggregate = staticmethod(aggregate)


class CheckRunDir(Callback):
    """Every command's Hydra callback: a run (or sweep) directory that cannot be made, a read-only
    folder or one under /proc, stops the command in one line before any work, where Hydra would
    print a traceback."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._make(config, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._make(config, "hydra.sweep.dir")

    @staticmethod
    def _make(config: Any, key: str) -> None:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        HydraConfig.instance().set_config(config)  # the run dir's ${hydra:...} resolves against it, as the job's does
        try:
            folder = Path(str(OmegaConf.select(config, key)))
        except Exception:  # a name that does not resolve: Hydra says so itself when it makes the directory
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"{config.hydra.job.name}: error: {key}={folder}: cannot make it ({e.strerror or e})", file=sys.stderr)
            raise SystemExit(2) from None
