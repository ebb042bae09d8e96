"""The per-block latency lookup table: the sum rule, the cache, concurrent writers, damage."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import random

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archgen
from archgen.cost import lut as lut_module
from archgen.cost.latency import Latency, LatencySettings
from archgen.cost.lut import Calibration, LatencyTable
from archgen.layers.context import BuildContext

from ..test_properties import corrupted_bytes

FAST = LatencySettings(warmup=1, repeats=3)


def _spec(name="mbv3_small", **knobs):
    return archgen.load_spec(name, input_size=64, **knobs)


def test_prediction_is_the_scaled_sum_of_the_blocks_plus_the_overhead(tmp_path):
    table = LatencyTable(FAST, tmp_path)
    spec = _spec()
    first = table.predict(spec)
    assert [name for name, _ in first.blocks] == [b.name for b in spec.blocks]
    assert all(ms > 0 for _, ms in first.blocks)
    assert not first.calibrated and first.total_ms == pytest.approx(sum(ms for _, ms in first.blocks))
    table.calibration = Calibration(scale=1.1, overhead_ms=1.25, networks=2)
    again = table.predict(spec)
    assert again.blocks == first.blocks  # read from the table, not measured again
    assert again.total_ms == pytest.approx(1.1 * sum(ms for _, ms in first.blocks) + 1.25)


def test_each_block_config_is_measured_once_and_cached_on_disk(tmp_path, monkeypatch):
    calls = []
    real = LatencyTable._measure

    def counting(self, blocks):
        calls.extend(blocks)
        return real(self, blocks)

    monkeypatch.setattr(LatencyTable, "_measure", counting)
    spec = _spec()
    LatencyTable(FAST, tmp_path).predict(spec)
    assert len(calls) == len(set(calls)) == len({b.key() for b in spec.blocks})
    calls.clear()
    fresh = LatencyTable(FAST, tmp_path)  # a new process would read the same file
    fresh.predict(spec)
    assert calls == []
    wider = _spec(width_mult=1.25)  # other widths are other keys
    fresh.predict(wider)
    assert calls and all(k.endswith("-round:8-batch:1") for k in calls)


def test_tables_are_per_environment(tmp_path):
    one, two = LatencyTable(FAST, tmp_path), LatencyTable(LatencySettings(threads=2, warmup=1, repeats=3), tmp_path)
    assert one.path != two.path and one.path.parent == two.path.parent
    batch = LatencyTable(LatencySettings(batch_size=4, warmup=1, repeats=3), tmp_path)
    block = _spec().blocks[3]
    assert batch.path == one.path and batch.key(block, 8) != one.key(block, 8)


def test_calibration_fits_a_line_through_the_measured_networks(tmp_path, monkeypatch):
    table = LatencyTable(FAST, tmp_path)
    specs = [_spec(), _spec(width_mult=0.75), _spec(width_mult=0.5)]
    sums = [table.predict(s).total_ms for s in specs]
    monkeypatch.setattr(  # networks that take 1.2 x their blocks' sum + 0.5 ms
        lut_module, "measure_side_by_side",
        lambda models, settings: [Latency(1.2 * t + 0.5, 0, 0, 1, 1, {}) for t in sums],
    )
    fitted = table.calibrate(specs)
    assert (fitted.scale, fitted.overhead_ms, fitted.networks) == (pytest.approx(1.2), pytest.approx(0.5), 3)
    assert LatencyTable(FAST, tmp_path).calibration == fitted  # saved with the table
    assert table.predict(specs[0]).total_ms == pytest.approx(1.2 * sums[0] + 0.5)


def test_one_network_calibrates_an_offset_only(tmp_path):
    table = LatencyTable(FAST, tmp_path)
    spec = _spec()
    blocks = table.predict(spec).total_ms
    fitted = table.calibrate([spec], measured=[blocks + 0.75])
    assert (fitted.scale, fitted.overhead_ms, fitted.networks) == (1.0, pytest.approx(0.75), 1)


def _fill(cache_dir: str, width: float) -> None:
    LatencyTable(FAST, cache_dir).predict(archgen.load_spec("mbv3_small", input_size=32, width_mult=width))


def test_concurrent_writers_keep_every_entry(tmp_path):
    widths = [0.5, 0.75, 1.0, 1.25]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        pool.starmap(_fill, [(str(tmp_path), w) for w in widths])
    table = LatencyTable(FAST, tmp_path)
    doc = json.loads(table.path.read_text())
    expected = {
        table.key(b, 8)
        for w in widths
        for b in archgen.load_spec("mbv3_small", input_size=32, width_mult=w).blocks
    }
    assert expected <= set(doc["entries"])
    assert not list(table.path.parent.glob("*.tmp"))


def _rewrite(change):
    """A damage that edits the valid table's document."""
    def damage(path, doc):
        change(doc)
        path.write_text(json.dumps(doc))  # json.dumps writes NaN and Infinity, which json.loads reads back
    return damage


def _folder(path, doc):
    path.unlink()
    (path / "inside").mkdir(parents=True)


DAMAGES = {
    "not json": lambda path, doc: path.write_text("{ not json"),
    "a string entry": lambda path, doc: path.write_text('{"format": 2, "entries": {"a": "fast"}}'),
    "a list": lambda path, doc: path.write_text("[]"),
    "empty": lambda path, doc: path.write_text(""),
    "random bytes": lambda path, doc: path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096))),
    "deep nesting": lambda path, doc: path.write_text("[" * 100_000 + "]" * 100_000),
    "unknown calibration field": _rewrite(lambda doc: doc.update(calibration={"bogus": 1})),
    "NaN scale": _rewrite(lambda doc: doc["calibration"].update(scale=math.nan)),
    "infinite entries": _rewrite(lambda doc: doc["entries"].update(dict.fromkeys(doc["entries"], math.inf))),
    "a folder in its place": _folder,
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_table_is_moved_aside_and_rebuilt_with_one_warning(tmp_path, damage):
    table = LatencyTable(FAST, tmp_path)
    spec = _spec()
    table.predict(spec)
    table.calibrate([spec], measured=[1.0])
    damage(table.path, json.loads(table.path.read_text()))
    with pytest.warns(RuntimeWarning, match="damaged latency table") as caught:
        rebuilt = LatencyTable(FAST, tmp_path)
        assert len(rebuilt) == 0 and rebuilt.calibration.networks == 0
        prediction = rebuilt.predict(spec)
    assert math.isfinite(prediction.total_ms) and prediction.total_ms > 0
    assert len(caught) == 1  # reported once, when read; the rebuilt file replaces it silently
    assert len(json.loads(rebuilt.path.read_text())["entries"]) == len({b.key() for b in spec.blocks})
    aside = list(table.path.parent.glob(f"{table.path.name}.damaged.*"))
    assert len(aside) == 1 and aside[0].name in str(caught[0].message)


def test_a_table_of_another_environment_is_not_trusted(tmp_path):
    table = LatencyTable(FAST, tmp_path)
    table.predict(_spec())
    doc = json.loads(table.path.read_text())
    doc["fingerprint"]["cpu"] = "some other CPU"
    table.path.write_text(json.dumps(doc))
    with pytest.warns(RuntimeWarning, match="another format or environment"):
        assert len(LatencyTable(FAST, tmp_path)) == 0


def test_a_table_built_with_another_protocol_is_another_table_never_silently_reused(tmp_path):
    """A cold build (one repeat, no warm-up) once served every default run from the same file."""
    cold = LatencyTable(LatencySettings(warmup=0, repeats=1), tmp_path)
    cold.predict(_spec())
    warm = LatencyTable(FAST, tmp_path)
    assert warm.path != cold.path and len(warm) == 0
    doc = json.loads(cold.path.read_text())
    assert doc["protocol"] == {"warmup": 0, "repeats": 1, "statistic": "median"}
    warm.path.write_text(json.dumps(doc))  # a cold table copied in place of the warm one
    with pytest.warns(RuntimeWarning, match=r"timed with another protocol \({'warmup': 0, 'repeats': 1"):
        assert len(LatencyTable(FAST, tmp_path)) == 0


def test_block_latencies_follow_the_work(tmp_path):
    # A 7x7 depthwise kernel on 6x the channels must not be predicted cheaper than 3x3 on 3x.
    table = LatencyTable(LatencySettings(warmup=2, repeats=15), tmp_path)
    block = next(b for b in archgen.load_spec("mbv3_large").blocks if b.name == "stages.1.1")
    ctx = BuildContext(round_to=8)
    small = table.block_ms(dataclasses.replace(block, kernel=3, exp=3 * block.in_chs), ctx)
    big = table.block_ms(dataclasses.replace(block, kernel=7, exp=6 * block.in_chs), ctx)
    assert big > small


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
def test_a_randomly_corrupted_table_file_is_read_or_set_aside_never_an_exception(tmp_path_factory, draw):
    cache = tmp_path_factory.mktemp("cache")
    table = LatencyTable(FAST, cache)
    table.entries.update({f"block-{i}": 0.01 * (i + 1) for i in range(5)})
    table.calibration = Calibration(scale=1.15, overhead_ms=0.2, networks=3)
    table._save()
    table.path.write_bytes(draw.draw(corrupted_bytes(table.path.read_bytes())))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = LatencyTable(FAST, cache)
    assert all(math.isfinite(v) and v >= 0 for v in again.entries.values())
    assert math.isfinite(again.calibration.scale) and math.isfinite(again.calibration.overhead_ms)
    assert len(caught) <= 1 and all("damaged latency table" in str(w.message) for w in caught)
    assert (len(caught) == 1) == (not table.path.exists())  # a damaged file is moved aside, a good one stays
