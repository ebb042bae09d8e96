"""``python -m archgen``: the layer table, the run's outputs, overrides, multirun, bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import archgen
from archgen.__main__ import knob_overrides, run
from archgen.cli import discard_run_dir
from archgen.cost.latency import describe
from archgen.zoo import CONF_DIR
from tests.conftest import full_disk, user_block_module

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archgen", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def compose_run(tmp_path):
    """Compose the Hydra config in-process (as the app would) and run it into tmp_path."""

    def go(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        model = cfg.hydra.runtime.choices.get("model")
        with open_dict(cfg):
            del cfg["hydra"]
        return run(cfg, tmp_path, list(overrides), model)

    return go


@pytest.mark.parametrize("name", archgen.list_models())
def test_every_zoo_config_composes_and_runs(compose_run, tmp_path, name, capsys):
    summary = compose_run(f"model={name}", "table=false", "measure=false")
    assert summary["model"] == name
    assert "latency" not in summary
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["params"] == archgen.count(archgen.load_spec(name)).params
    assert name in capsys.readouterr().out


def test_overrides_reach_the_model(compose_run, tmp_path):
    s = compose_run("model=mbv2", "model.width_mult=0.75", "model.input_size=192", "model.num_classes=10", "measure=false")
    assert (s["width_mult"], s["input_size"], s["num_classes"]) == (0.75, [192, 192], 10)
    expected = archgen.load_spec("mbv2", width_mult=0.75, input_size=192, num_classes=10)
    assert s["params"] == archgen.count(expected).params


def test_written_spec_rebuilds_the_identical_model(compose_run, tmp_path):
    compose_run("model=mbv3_small", "model.width_mult=0.75", "table=false", "measure=false")
    written = archgen.load_spec(tmp_path / "spec.yaml")
    original = archgen.load_spec("mbv3_small", width_mult=0.75)
    assert [b.to_dict() for b in written.blocks] == [b.to_dict() for b in original.blocks]
    a, b = archgen.build(written).state_dict(), archgen.build(original).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]


def test_main_command_prints_the_layer_table_and_writes_outputs(tmp_path):
    r = _cli("model=mbv3_large", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "block" in line and "MACs" in line)
    for column in ("type", "input -> output", "k", "exp", "se", "nl", "s", "params"):
        assert column in header
    assert "stages.4.2" in r.stdout and "3x224x224 -> 16x112x112" in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"{summary['params']:,} params" in r.stdout
    latency = summary["latency"]
    assert latency["repeats"] == 50 and latency["batch_size"] == 1
    assert 0 < latency["p10_ms"] <= latency["median_ms"] <= latency["p90_ms"]
    assert latency["fingerprint"]["threads"] == 1 and latency["fingerprint"]["device"] == "cpu"
    assert f"latency: {latency['median_ms']:.2f} ms" in r.stdout and latency["fingerprint"]["cpu"] in r.stdout
    assert yaml.safe_load((tmp_path / "spec.yaml").read_text())["name"] == "mbv3_large"
    rebuilt = _cli(f"spec={tmp_path / 'spec.yaml'}", f"hydra.run.dir={tmp_path / 'again'}", "table=false")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["params"] == summary["params"]


def test_multirun_writes_each_summary_and_one_table(tmp_path):
    # the knob without its model. prefix, as the sweep reads best (knob_overrides adds it)
    r = _cli("-m", "model=mbv1,mbv2", "width_mult=0.5,1.0", "table=false", "latency.repeats=3",
             f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    jobs = sorted(p.parent.name for p in tmp_path.glob("*/summary.json"))
    assert len(jobs) == 4
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("job,model,width_mult")
    assert len(rows) == 5
    for row in csv.DictReader(rows):  # each job's measured latency, with the environment it was measured in
        latency = json.loads((tmp_path / row["job"] / "summary.json").read_text())["latency"]
        assert float(row["latency_ms"]) == pytest.approx(latency["median_ms"])
        assert row["env"] == describe(latency["fingerprint"]) and latency["repeats"] == 3
    md = (tmp_path / "summary.md").read_text().splitlines()
    assert len(md) == 6 and md[0].startswith("| job | model |")
    params = {(json.loads(p.read_text())["model"], json.loads(p.read_text())["width_mult"]): json.loads(p.read_text())["params"]
              for p in tmp_path.glob("*/summary.json")}
    assert params[("mbv2", 0.5)] == archgen.count(archgen.load_spec("mbv2", width_mult=0.5)).params


def _assert_bad_input(r: subprocess.CompletedProcess, *fragments: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in lines[0]


@pytest.mark.parametrize("override, says", [
    ("latency.threads=${oc.env:ARCHGEN_TEST_UNSET_VARIABLE}", "Environment variable 'ARCHGEN_TEST_UNSET_VARIABLE' not found"),
    ("latency.threads=${latency.threads}", "Recursive interpolation detected"),
])
def test_a_setting_the_config_cannot_resolve_is_one_line_not_a_traceback(tmp_path, override, says):
    r = _cli("model=mbv2", override, f"hydra.run.dir={tmp_path}")
    _assert_bad_input(r, "archgen: error: config: ", says)


def test_unknown_model_lists_the_zoo(tmp_path):
    r = _cli("model=mbv9", f"hydra.run.dir={tmp_path}")
    _assert_bad_input(r, "unknown model 'mbv9'", "mbv3_large")
    assert not any(tmp_path.iterdir())


def test_malformed_spec_file_exits_2_without_writing(tmp_path):
    bad = tmp_path / "bad.yaml"
    spec = yaml.safe_load((CONF_DIR / "model" / "mbv3_small.yaml").read_text())
    spec["body"]["rows"][3][0] = 4  # an even kernel in the 4th bneck row
    bad.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    r = _cli(f"spec={bad}", f"hydra.run.dir={out}")
    _assert_bad_input(r, str(bad), "body row 4", "'k'", "odd")
    assert not (out / "summary.json").exists() and not (out / "spec.yaml").exists()


def test_a_bare_knob_is_the_models_and_everything_else_is_left_alone():
    argv = ["-m", "model=mbv2", "width_mult=0.5,1.0", "input_size=192", "+model.dropout=0.1", "latency.threads=2", "spec=x.yaml"]
    assert knob_overrides(argv) == ["-m", "model=mbv2", "model.width_mult=0.5,1.0", "model.input_size=192",
                                    "+model.dropout=0.1", "latency.threads=2", "spec=x.yaml"]


def test_bn_settings_on_the_command_line_reach_any_spec(compose_run, tmp_path):
    """bn.eps= fixes a checkpoint's eps (archgen.load_reference_weights names it), also in a spec with no bn key."""
    assert knob_overrides(["bn.eps=1e-5", "model.bn.momentum=0.01", "model=mbv2"]) == [
        "++model.bn.eps=1e-5", "++model.bn.momentum=0.01", "model=mbv2"]
    assert "bn" not in yaml.safe_load((CONF_DIR / "model" / "resnet18.yaml").read_text())
    compose_run("model=resnet18", *knob_overrides(["bn.eps=1e-3"]), "table=false", "measure=false")
    assert yaml.safe_load((tmp_path / "spec.yaml").read_text())["bn"] == {"eps": 0.001, "momentum": 0.1}
    spec_file = tmp_path / "copy.yaml"
    spec_file.write_text((tmp_path / "spec.yaml").read_text())
    compose_run(f"spec={spec_file}", *knob_overrides(["bn.eps=1e-4", "num_classes=10"]), "table=false", "measure=false")
    written = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert (written["bn"]["eps"], written["num_classes"], written["blocks"][-1]["out"]) == (1e-4, 10, 10)


def test_a_failed_run_keeps_a_run_directory_that_holds_anything_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hydra_only, kept, named = tmp_path / "outputs" / "a", tmp_path / "outputs" / "b", tmp_path / "mine"
    for d in (hydra_only, kept, named):
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text("{}")
        (d / "archgen.log").write_text("")
    (kept / "notes.txt").write_text("mine")
    for d in (hydra_only, kept, named):
        discard_run_dir(d)
    assert not hydra_only.exists() and (kept / "notes.txt").read_text() == "mine" and (kept / ".hydra" / "config.yaml").exists()
    assert (named / ".hydra" / "config.yaml").exists()  # hydra.run.dir= outside outputs/: the user's folder, left alone


def test_a_run_stopped_by_its_checks_leaves_no_run_directory(tmp_path):
    r = _cli("model=mbv2", "width_mult=1000", cwd=tmp_path)
    _assert_bad_input(r, "'width_mult' must be a number in (0, 100], got 1000")
    assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]


def test_unreadable_yaml_exits_2(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nbody: [1, 2\n")
    _assert_bad_input(_cli(f"spec={bad}", f"hydra.run.dir={tmp_path / 'run'}"), str(bad), "unreadable YAML")


def test_imports_register_user_blocks_only_when_asked(tmp_path):
    env = user_block_module(tmp_path, "my_blocks", "cli_test_double_conv")
    spec = tmp_path / "user.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "user", "num_classes": 5, "input_size": 32,
        "body": {"type": "cli_test_double_conv", "columns": ["c", "n", "s"], "rows": [[8, 1, 2], [16, 2, 2]]},
        "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
    }))
    without = _cli(f"spec={spec}", f"hydra.run.dir={tmp_path / 'a'}", env=env)
    _assert_bad_input(without, "unknown block type 'cli_test_double_conv'")
    with_import = _cli(f"spec={spec}", "imports=[my_blocks]", f"hydra.run.dir={tmp_path / 'b'}", env=env)
    assert with_import.returncode == 0, with_import.stderr
    s = json.loads((tmp_path / "b" / "summary.json").read_text())

    def conv3x3(i: int, o: int) -> int:
        return i * o * 9 + o

    blocks = [conv3x3(3, 8) + conv3x3(8, 8), conv3x3(8, 16) + conv3x3(16, 16), 2 * conv3x3(16, 16)]
    assert s["params"] == sum(blocks) + 16 * 5 + 5


def test_unimportable_module_exits_2(tmp_path):
    _assert_bad_input(_cli("imports=[no_such_module_xyz]", f"hydra.run.dir={tmp_path}"), "imports", "no_such_module_xyz")


def test_latency_settings_reach_the_measurement(compose_run):
    s = compose_run("model=mbv3_small", "model.input_size=96", "latency.repeats=7", "latency.warmup=1",
                    "latency.threads=2", "table=false")
    assert s["latency"]["repeats"] == 7 and s["latency"]["fingerprint"]["threads"] == 2


def test_deploy_measures_the_inference_form_beside_the_training_form(compose_run, capsys):
    s = compose_run("model=mbv3_small", "model.input_size=96", "latency.repeats=5", "deploy=true", "table=false")
    assert s["deploy_latency"]["repeats"] == 5 and s["latency"]["repeats"] == 5
    out = capsys.readouterr().out
    assert "latency, inference form:" in out and "x the training form" in out


def test_lut_adds_a_per_block_column_and_a_prediction(compose_run, tmp_path, capsys):
    s = compose_run("model=mbv3_small", "model.input_size=64", "latency=lut", "latency.repeats=3",
                    f"cache={tmp_path / 'cache'}")
    assert "latency" not in s  # predicted, not measured
    lut = s["lut_latency"]
    assert set(lut["blocks"]) == {b["name"] for b in yaml.safe_load((tmp_path / "spec.yaml").read_text())["blocks"]}
    assert lut["predicted_ms"] == pytest.approx(sum(lut["blocks"].values()) + lut["overhead_ms"])
    out = capsys.readouterr().out
    assert "LUT ms" in out.splitlines()[0] and "latency, lookup table:" in out
    assert list((tmp_path / "cache" / "lut").glob("*.json"))


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("latency.threads=0", ("latency.threads must be an integer >= 1, got 0",)),
        ("latency.repeats=0", ("latency.repeats must be an integer >= 1, got 0",)),
        ("latency.device=tpu", ("latency.device must be one of: cpu, cuda, got 'tpu'",)),
        ("latency.source=guess", ("latency.source must be one of: measured, lut, got 'guess'",)),
        ("+latency.thread=2", ("unknown setting latency.thread",)),
        ("export=tflite", ("export must be one of: onnx, torchscript, got 'tflite'",)),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(tmp_path, override, fragments):
    r = _cli("model=mbv3_small", override, f"hydra.run.dir={tmp_path}")
    _assert_bad_input(r, *fragments)
    assert not any(tmp_path.iterdir()) or not (tmp_path / "summary.json").exists()


def test_cuda_without_a_gpu_exits_2(tmp_path):
    r = _cli("model=mbv3_small", "latency.device=cuda", f"hydra.run.dir={tmp_path}", env={"CUDA_VISIBLE_DEVICES": ""})
    _assert_bad_input(r, "latency.device=cuda but no CUDA GPU is available here")


def test_an_input_the_network_cannot_take_exits_2(tmp_path):
    r = _cli("model=vgg11", "model.input_size=16", f"hydra.run.dir={tmp_path}")  # five 2x2 pools: 16 -> 0
    _assert_bad_input(r, "input_size 16x16 is too small: the feature map reaches zero at stage 4")


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", "onnx"), ("torchscript", "pt")])
def test_export_writes_the_checked_model_into_the_run_dir(compose_run, tmp_path, fmt, suffix):
    s = compose_run("model=mbv3_small", "model.input_size=64", "measure=false", "deploy=true", f"export={fmt}",
                    "table=false")
    assert s["export"]["file"] == f"model.{suffix}" and (tmp_path / f"model.{suffix}").stat().st_size > 1e6
    assert 0 <= s["export"]["max_abs_diff"] <= 1e-4


def test_a_write_that_fails_on_a_full_disk_is_one_line_and_leaves_whole_files_and_a_stated_partial_run(tmp_path):
    """It was a traceback, and spec.yaml stood in the run directory without summary.json, unsaid."""
    run = tmp_path / "run"
    # Hydra's own records fit; the expanded spec of DenseNet-121 does not
    r = subprocess.run([sys.executable, "-m", "archgen", "model=densenet121", "model.input_size=64", f"hydra.run.dir={run}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300, preexec_fn=full_disk(6000))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"archgen: error: File too large: {run / 'spec.yaml'}; {run} is partial: it holds only")
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp")) and not (run / "spec.yaml").exists()


@pytest.mark.parametrize("command, key", [(["archgen", "model=mbv2"], "hydra.run.dir=/proc/archgen/run"),
                                          (["search"], "hydra.run.dir=/proc/archgen/run"),
                                          (["archgen", "-m", "model=mbv2"], "hydra.sweep.dir=/proc/archgen/run")])
def test_a_run_directory_that_cannot_be_made_is_one_line_not_hydras_traceback(command, key):
    r = subprocess.run([sys.executable, "-m", *command, key], cwd=REPO, capture_output=True, text=True, timeout=300)
    _assert_bad_input(r, f"{command[0]}: error: {key}: cannot make it (No such file or directory)")
