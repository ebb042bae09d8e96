"""What a run shows and writes: the layer table, the summary, and the multirun table."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from .cost import ModelCost
from .ir import fmt_shape
from .spec import ModelSpec

SUMMARY = "summary.json"
EXPANDED_SPEC = "spec.yaml"
AGG_COLUMNS = ("job", "model", "width_mult", "depth_mult", "input_size", "num_classes", "params", "macs")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def layer_table(spec: ModelSpec, cost: ModelCost) -> str:
    """One line per block: index, name, type, input -> output shape, k, exp, SE, activation, stride, params, MACs."""
    headers = ("#", "block", "type", "input -> output", "k", "exp", "se", "nl", "s", "params", "MACs")
    rows = []
    for i, (b, c) in enumerate(zip(spec.blocks, cost.blocks)):
        shape = f"{fmt_shape(b.in_chs, b.in_size)} -> {fmt_shape(b.out_chs, b.out_size)}"
        rows.append(
            (i, b.name, b.type, shape, b.kernel or "-", b.exp or "-", f"{b.se:g}" if b.se else "-", b.act or "-",
             b.stride, f"{c.params:,}", f"{c.macs:,}")
        )
    return format_table(headers, rows, align="rllllllllrr")


def totals_line(spec: ModelSpec, cost: ModelCost) -> str:
    h, w = spec.input_size
    return (
        f"{spec.name}: {cost.params:,} params ({cost.params / 1e6:.2f} M), {cost.macs:,} MACs ({cost.macs / 1e6:.1f} M) "
        f"at {spec.in_chans}x{h}x{w}, width_mult {spec.width_mult:g}, depth_mult {spec.depth_mult:g}, "
        f"{len(spec.blocks)} blocks in {spec.num_stages} stages"
    )


def summary(spec: ModelSpec, cost: ModelCost) -> dict[str, Any]:
    """What ``summary.json`` holds."""
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
    }


def write_run(out_dir: Path, spec: ModelSpec, cost: ModelCost) -> dict[str, Any]:
    """Write the expanded spec and the summary into a run directory; returns the summary."""
    s = summary(spec, cost)
    write_atomic(out_dir / EXPANDED_SPEC, spec.to_yaml())
    write_atomic(out_dir / SUMMARY, json.dumps(s, indent=2) + "\n")
    return s


def aggregate(sweep_dir: Path) -> list[dict[str, Any]]:
    """Collect every job's summary under a sweep dir into ``summary.csv`` and ``summary.md`` there."""
    rows = []
    for path in sorted(sweep_dir.glob(f"*/{SUMMARY}"), key=lambda p: _job_order(p.parent.name)):
        s = json.loads(path.read_text())
        h, w = s["input_size"]
        rows.append(
            {"job": path.parent.name, "model": s["model"], "width_mult": s["width_mult"], "depth_mult": s["depth_mult"],
             "input_size": f"{h}x{w}", "num_classes": s["num_classes"], "params": s["params"], "macs": s["macs"]}
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=AGG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(sweep_dir / "summary.csv", buf.getvalue())
    md_rows = [
        (r["job"], r["model"], r["width_mult"], r["depth_mult"], r["input_size"], r["num_classes"],
         f"{r['params'] / 1e6:.3f}", f"{r['macs'] / 1e6:.1f}")
        for r in rows
    ]
    headers = ("job", "model", "width_mult", "depth_mult", "input_size", "num_classes", "params (M)", "MACs (M)")
    write_atomic(sweep_dir / "summary.md", markdown_table(headers, md_rows))
    return rows


def _job_order(dirname: str) -> tuple[int, str]:
    head = dirname.split("_", 1)[0]
    return (int(head), dirname) if head.isdigit() else (1 << 30, dirname)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a dependency; this keeps report importable without it
    Callback = object  # type: ignore[assignment,misc]


class AggregateSummaries(Callback):  # type: ignore[misc]
    """Hydra callback: at the end of a multirun, write the sweep's summary table (CSV and Markdown)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = aggregate(sweep_dir)
        if rows:
            print(f"\n{len(rows)} runs -> {sweep_dir / 'summary.csv'}, {sweep_dir / 'summary.md'}")
