"""A latency table built on the target (``archgen.target``, ``ort_bench.py``): export every
distinct block of a space, time them where neither torch nor archgen can be imported, import the
table, and use it; and each refusal in one line."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import archgen
from archgen.cost.latency import LatencySettings, measure_side_by_side
from archgen.cost.lut import open_table, table_key
from archgen.target import distinct_blocks, export_blocks, import_table, validation_line
from archgen.space import Space

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "archgen" / "ort_bench.py"
TOY = {
    "name": "toy", "num_classes": 10, "in_chans": 3, "input_size": 32, "round_to": 8,
    "stem": [{"type": "conv", "c": 8, "k": 3, "s": 2, "nl": "RE"}],
    "body": {"type": "bneck", "columns": ["k", "exp", "c", "se", "nl", "s"],
             "rows": [[3, 16, 8, False, "RE", 1], [3, 24, 16, False, "RE", 2]]},
    "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
}
# torch and archgen made unimportable, as on a target that has only onnxruntime and numpy
TORCH_FREE = ("import runpy, sys; sys.modules['torch'] = None; sys.modules['archgen'] = None; "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _bench(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TORCH_FREE, str(script), *args], capture_output=True, text=True,
                          timeout=300, cwd=script.parent)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("target")
    (root / "toy.yaml").write_text(yaml.safe_dump(TOY))
    (root / "space.yaml").write_text(yaml.safe_dump({"base": str(root / "toy.yaml"),
                                                     "per_block": {"k": [3, 5], "se": [False, True]}}))
    export_blocks(str(root / "space.yaml"), root / "blocks", LatencySettings(backend="onnxruntime", warmup=1, repeats=3),
                  validate=3)
    shutil.copy(BENCH, root / "ort_bench.py")  # the single file a user copies to the target
    return root


def test_the_export_holds_every_block_any_point_of_the_space_contains(exported):
    manifest = json.loads((exported / "blocks" / "manifest.json").read_text())
    keys = {b["key"] for b in manifest["blocks"]}
    assert len(keys) == len(manifest["blocks"]) and all((exported / "blocks" / b["file"]).is_file() for b in manifest["blocks"])
    space, rng = Space(str(exported / "space.yaml")), random.Random(0)
    for _ in range(40):
        spec = space.random(rng).spec
        assert {table_key(b, spec.round_to, 1) for b in spec.blocks} <= keys
    # two bneck rows x (kernel 3, 5) x (SE off, on), and the stem, pool and classifier
    assert len(keys) == len(distinct_blocks(space, 1)) == 2 * 4 + 3
    assert [(n["name"], n["role"]) for n in manifest["networks"]] == [
        ("cheapest", "calibration"), ("base", "calibration"), ("dearest", "calibration"),
        *((f"validation_{i:03d}", "validation") for i in range(3))]
    rng = random.Random(0)  # the validation networks are the seeded draws of the space
    for net in manifest["networks"][3:]:
        spec = space.random(rng).spec
        assert net["blocks"] == [table_key(b, spec.round_to, 1) for b in spec.blocks]


def test_the_target_times_them_without_torch_and_the_imported_table_predicts(exported, tmp_path):
    r = _bench(exported / "ort_bench.py", "blocks", "--warmup", "1", "--repeats", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("timed 11 blocks and 6 networks on ")
    table = json.loads((exported / "blocks" / "table.json").read_text())
    assert table["device"]["provider"] == "CPUExecutionProvider" and len(table["blocks"]) == 11

    installed = import_table(exported / "blocks" / "table.json", cache_dir=tmp_path)
    settings = LatencySettings(source="lut", backend="onnxruntime", table=str(installed))
    lut = open_table(settings)
    assert lut.calibration.networks == 3 and lut.fingerprint["runtime"].endswith("timed by ort_bench.py")
    spec = Space(str(exported / "space.yaml")).dearest().spec
    prediction = lut.predict(spec)
    blocks = sum(table["blocks"][table_key(b, spec.round_to, 1)] for b in spec.blocks)
    assert prediction.total_ms == pytest.approx(lut.calibration.scale * blocks + lut.calibration.overhead_ms)

    # the validation networks: the table's predictions against the target's own times of them
    validation = json.loads(installed.read_text())["validation"]
    manifest = json.loads((exported / "blocks" / "manifest.json").read_text())
    pairs = [(lut.calibration.scale * sum(table["blocks"][k] for k in n["blocks"]) + lut.calibration.overhead_ms,
              table["networks"][n["name"]]) for n in manifest["networks"] if n["role"] == "validation"]
    assert validation["samples"] == 3
    assert validation["mape"] == pytest.approx(sum(abs(p - m) / m for p, m in pairs) / 3)
    assert -1 <= validation["kendall_tau"] <= 1
    assert validation_line(installed).startswith("on the target: MAPE ")

    # a network with blocks the target never timed is refused, not guessed or timed here
    with pytest.raises(archgen.SpecError, match=r"has no entry for block stem\.0 \(conv\) of mbv3_small: export"):
        lut.predict(archgen.load_spec("mbv3_small"))
    with pytest.raises(archgen.SpecError, match=r"holds another device's figures; networks cannot be measured"):
        measure_side_by_side([(archgen.build(spec), 3, spec.input_size)], settings)


def test_ort_bench_refuses_a_folder_without_a_manifest_in_one_line(exported, tmp_path):
    r = _bench(exported / "ort_bench.py", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"ort_bench.py: error: {tmp_path}: no manifest.json; export the blocks with "
                                "python -m archgen.target export")


def _edit(manifest: dict, section: str, index: int, **fields) -> dict:
    items = [dict(i) for i in manifest[section]]
    items[index] = {k: v for k, v in {**items[index], **fields}.items() if v is not None}
    return {**manifest, section: items}


MANIFEST_FAULTS = {
    "absolute file": (lambda m: _edit(m, "blocks", 0, file="/etc/passwd"), r"blocks\[0\]: file '/etc/passwd' must be a path inside"),
    "file out of the folder": (lambda m: _edit(m, "blocks", 1, file="../ort_bench.py"), r"blocks\[1\]: file '../ort_bench.py' must be"),
    "negative shape": (lambda m: _edit(m, "blocks", 0, input_shape=[1, -3, 8, 8]), r"input_shape must be a list of 1-8 integers"),
    "string shape": (lambda m: _edit(m, "blocks", 0, input_shape="1x3x8x8"), r"input_shape must be a list"),
    "huge shape": (lambda m: _edit(m, "blocks", 0, input_shape=[60000, 60000, 1, 1]), r"elements, more than 268435456"),
    "no name, last": (lambda m: _edit(m, "networks", -1, name=None), r"networks\[\d+\]: no 'name'"),
    "no key": (lambda m: _edit(m, "blocks", 0, key=None), r"blocks\[0\]: no 'key'"),
    "entry not an object": (lambda m: {**m, "blocks": [1]}, r"blocks\[0\]: must be an object"),
    "repeats 0": (lambda m: {**m, "protocol": {**m["protocol"], "repeats": 0}}, r"protocol.repeats must be an integer >= 1, got 0"),
    "bogus level": (lambda m: {**m, "protocol": {**m["protocol"], "ort_optimization": "turbo"}}, r"protocol.ort_optimization must be one of"),
    "a list": (lambda m: [m], r"not an archgen block manifest"),
    "deep nesting": (lambda m: None, r"not a readable manifest \(RecursionError"),
}


@pytest.mark.parametrize("fault", MANIFEST_FAULTS)
def test_ort_bench_checks_its_manifest_before_timing_anything_and_refuses_in_one_line(exported, tmp_path, fault):
    """Each of these was a traceback, some after all the timing, or a file outside the folder timed without a word."""
    folder = tmp_path / "blocks"
    shutil.copytree(exported / "blocks", folder)
    (folder / "table.json").unlink(missing_ok=True)  # another test timed the folder
    edit, message = MANIFEST_FAULTS[fault]
    manifest = json.loads((folder / "manifest.json").read_text())
    edited = edit(manifest)
    (folder / "manifest.json").write_text("[" * 100_000 if edited is None else json.dumps(edited))
    r = _bench(exported / "ort_bench.py", str(folder))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(message, r.stderr) and not (folder / "table.json").exists()


def _first_block(t: dict) -> str:
    return next(iter(t["blocks"]))


def _first_validation(m: dict) -> str:
    return next(n["name"] for n in m["networks"] if n.get("role") == "validation")


# (edit of the manifest, edit of the table, the refusal): each was a traceback, or installed without a word
IMPORT_FAULTS = {
    "manifest a list": (lambda m: [m], None, r"not a block manifest of format 1"),
    "blocks not objects": (lambda m: {**m, "blocks": [1, 2]}, None, r"'blocks' must be a list of objects with a 'key'"),
    "a block without key": (lambda m: {**m, "blocks": [{"file": "x"}] + m["blocks"][1:]}, None, r"'blocks' must be a list"),
    "blocks a number": (lambda m: {**m, "blocks": 3}, None, r"'blocks' must be a list"),
    "nested brackets": ("[" * 100_000, None, r"not its manifest \(give manifest=\) \(RecursionError"),
    "batch_size abc": (lambda m: {**m, "batch_size": "abc"}, None, r"batch_size must be an integer >= 1, got 'abc'"),
    "a network without name": (lambda m: {**m, "networks": [{"blocks": []}]}, None, r"networks\[0\] must be \{name, blocks"),
    "a 401-digit timing": (None, lambda t: {**t, "blocks": {**t["blocks"], _first_block(t): 10**400}},
                           r"is not a finite number of milliseconds in \(0, 1e\+06\)"),
    "validation timed at 0": (None, lambda t, m: {**t, "networks": {**t["networks"], _first_validation(m): 0}},
                              r"is not a finite number of milliseconds"),
    "networks at 1e308": (None, lambda t: {**t, "networks": {k: 1e308 for k in t["networks"]}},
                          r"is not a finite number of milliseconds"),
    "blocks at 1e308": (None, lambda t: {**t, "blocks": {k: 1e308 for k in t["blocks"]}},
                        r"is not a finite number of milliseconds"),
    "a key outside the manifest": (None, lambda t: {**t, "blocks": {**t["blocks"], "../../etc/passwd": 0.5}},
                                   r"block '../../etc/passwd' is not in the manifest"),
    "timings that predict below 0": (None, lambda t: {**t, "networks": {k: 0.001 for k in t["networks"]}},
                                     r"which predicts -\d.* ms for network .*: no table that predicts a latency <= 0"),
}


@pytest.mark.parametrize("fault", IMPORT_FAULTS)
def test_import_refuses_a_hostile_table_or_manifest_in_one_line_where_it_installed_it_silently(exported, tmp_path, fault):
    r = _bench(exported / "ort_bench.py", "blocks", "--warmup", "0", "--repeats", "1", "--out", str(tmp_path / "t.json"))
    assert r.returncode == 0, r.stderr
    table = json.loads((tmp_path / "t.json").read_text())
    manifest = json.loads((exported / "blocks" / "manifest.json").read_text())
    edit_manifest, edit_table, message = IMPORT_FAULTS[fault]
    if edit_manifest is not None:
        raw = (edit_manifest if isinstance(edit_manifest, str) else json.dumps(edit_manifest(manifest))).encode()
    else:
        raw = (exported / "blocks" / "manifest.json").read_bytes()
        takes_manifest = edit_table.__code__.co_argcount == 2
        table = edit_table(table, manifest) if takes_manifest else edit_table(table)
    (tmp_path / "m.json").write_bytes(raw)
    table["manifest"] = hashlib.sha256(raw).hexdigest()[:16]  # the table names this manifest
    (tmp_path / "bad.json").write_text(json.dumps(table))
    with pytest.raises(archgen.SpecError, match=message) as err:
        import_table(tmp_path / "bad.json", tmp_path / "m.json", cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value) and not (tmp_path / "cache" / "lut").exists()


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_a_fifo_named_as_a_table_is_refused_not_read_without_end(tmp_path, special):
    path = "/dev/zero" if special == "/dev/zero" else str(tmp_path / "fifo")
    if special == "fifo":
        os.mkfifo(path)
    with pytest.raises(archgen.SpecError, match="not a regular file"):
        import_table(Path(path), cache_dir=tmp_path)
    with pytest.raises(archgen.SpecError, match=r"latency.table=.*: not a regular file"):
        open_table(LatencySettings(source="lut", backend="onnxruntime", table=path))


def test_a_cache_or_an_export_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(archgen.SpecError, match=r"^cache .*file: cannot make the latency tables' folder"):
        open_table(LatencySettings(source="lut"), cache_dir=tmp_path / "file")
    with pytest.raises(archgen.SpecError, match=r"^out=.*file: cannot make the export's folders there"):
        export_blocks("mbv3_large", tmp_path / "file", LatencySettings(backend="onnxruntime"))


def test_ort_bench_refuses_an_out_in_a_missing_folder_before_timing(exported, tmp_path):
    r = _bench(exported / "ort_bench.py", "blocks", "--out", str(tmp_path / "no" / "t.json"))
    assert r.returncode == 2 and r.stderr.strip() == (f"ort_bench.py: error: --out {tmp_path / 'no' / 't.json'}: no folder "
                                                      f"{tmp_path / 'no'} to write it in")


def test_an_incomplete_damaged_or_foreign_table_is_refused_in_one_line(exported, tmp_path):
    r = _bench(exported / "ort_bench.py", "blocks", "--warmup", "0", "--repeats", "1", "--out", str(tmp_path / "t.json"))
    assert r.returncode == 0, r.stderr
    table = json.loads((tmp_path / "t.json").read_text())
    manifest = exported / "blocks" / "manifest.json"

    def refused(doc, match: str, raw: bytes | None = None) -> None:
        bad = tmp_path / "bad.json"
        bad.write_bytes(raw if raw is not None else json.dumps(doc).encode())
        with pytest.raises(archgen.SpecError, match=match) as err:
            import_table(bad, manifest, cache_dir=tmp_path)
        assert "\n" not in str(err.value)

    first = next(iter(table["blocks"]))
    refused({**table, "blocks": {k: v for k, v in table["blocks"].items() if k != first}},
            r"1 of the manifest's 11 blocks were not timed \(first: ")
    refused({**table, "blocks": {**table["blocks"], first: float("nan")}}, r"is not a finite number of milliseconds")
    refused({**table, "manifest": "0" * 16}, r"timed from another export than")
    refused(None, r"not a table ort_bench.py wrote", raw=b"\xff\xfe")
    with pytest.raises(archgen.SpecError, match=r"^latency.table=.*: cannot read it"):
        open_table(LatencySettings(source="lut", backend="onnxruntime", table=str(tmp_path / "none.json")))


def test_the_cli_exports_and_imports_and_refuses_bad_arguments_in_one_line(exported, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "archgen.target", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=300)

    r = cli("export", "out=x")
    assert r.returncode == 2 and r.stderr.strip().startswith("python -m archgen.target: error: export takes space=")
    r = cli("import", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "cannot read it" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    if not (exported / "blocks" / "table.json").exists():
        assert _bench(exported / "ort_bench.py", "blocks", "--warmup", "0", "--repeats", "1").returncode == 0
    r = cli("import", str(exported / "blocks" / "table.json"), f"cache={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert "use it with latency=lut latency.backend=onnxruntime latency.table=" in r.stdout
    assert "on the target: MAPE " in r.stdout and "over 3 random architectures" in r.stdout
    r = cli("export", "space=mbv3_large", "out=x", "validate=1")
    assert r.returncode == 2 and r.stderr.strip().endswith("validate must be 0 (none) or at least 2 architectures to rank, got 1")


def test_the_enumeration_covers_a_space_of_stage_widths_and_depths():
    # MnasNet's per-stage space, every kind of knob of the shipped mbv3_large_stage with two values
    # each (its full ranges give 8,880 points to enumerate, 15 s): kernel, expansion, SE, depth and
    # width per stage, where a stage's first block depends on the width of the stage before
    stage = {"base": "mbv3_large", "stages": [1, 2, 3, 4],
             "per_stage": {"k": [3, 5], "exp": [3, 6], "se": [False, True], "depth": [-1, 1], "width": [0.75, 1.5]}}
    space, rng = Space(stage), random.Random(1)
    keys = set(distinct_blocks(space, 1))
    for _ in range(100):
        spec = space.random(rng).spec
        assert {table_key(b, spec.round_to, 1) for b in spec.blocks} <= keys


def test_ctrl_c_during_an_export_is_one_line_and_leaves_no_manifest(tmp_path):
    """It was a KeyboardInterrupt traceback (nothing was written, and a rerun was clean)."""
    out = tmp_path / "x"
    proc = subprocess.Popen([sys.executable, "-m", "archgen.target", "export", "space=mbv3_large", f"out={out}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "blocks").is_dir() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # inside the export's timing and exporting
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip() == "python -m archgen.target: interrupted; nothing half-written was left (run it again to start over)"
    assert not (out / "manifest.json").exists()

