"""Measured latency: the protocol's settings, the statistics and the environment they carry."""

from __future__ import annotations

import pytest
import torch

import archgen
from archgen.checks import load_settings
from archgen.cost.latency import (
    LatencySettings,
    fingerprint,
    measure,
    measure_side_by_side,
    summarize,
)

FAST = LatencySettings(warmup=1, repeats=5)


def test_measure_reports_median_and_percentiles_with_the_environment():
    spec = archgen.load_spec("mbv3_small", input_size=64)
    result = measure(archgen.build(spec), spec.in_chans, spec.input_size, FAST)
    assert result.repeats == 5 and result.batch_size == 1
    assert 0 < result.p10_ms <= result.median_ms <= result.p90_ms
    assert set(result.fingerprint) == {"cpu", "threads", "torch", "device", "allocator", "backend", "runtime"}
    assert result.fingerprint["threads"] == 1 and result.fingerprint["torch"] == torch.__version__
    assert result.to_dict()["fingerprint"] == dict(result.fingerprint)


def test_statistics_are_the_median_and_deciles_of_the_timed_runs():
    lat = summarize([5.0, 1.0, 3.0, 2.0, 4.0, 9.0, 6.0, 8.0, 7.0, 10.0, 11.0], FAST)
    assert lat.median_ms == 6.0
    assert lat.p10_ms == pytest.approx(2.0) and lat.p90_ms == pytest.approx(10.0)


def test_threads_apply_while_measuring_and_are_restored(monkeypatch):
    before = torch.get_num_threads()
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    measure(Probe(), 3, (8, 8), LatencySettings(threads=2, warmup=0, repeats=2))
    assert seen == [2, 2]
    assert torch.get_num_threads() == before


def test_the_model_keeps_its_train_flag_and_runs_in_inference_mode():
    flags = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            flags.append((self.training, torch.is_inference_mode_enabled()))
            return x

    probe = Probe().train()
    measure(probe, 3, (8, 8), LatencySettings(warmup=0, repeats=1))
    assert flags == [(False, True)] and probe.training


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threads": 0}, "latency.threads must be an integer >= 1, got 0"),
        ({"repeats": 0}, "latency.repeats must be an integer >= 1, got 0"),
        ({"batch_size": -1}, "latency.batch_size must be an integer >= 1"),
        ({"warmup": -1}, "latency.warmup must be an integer >= 0"),
        ({"threads": 1.5}, "latency.threads must be an integer"),
        ({"device": "tpu"}, "latency.device must be one of: cpu, cuda, got 'tpu'"),
    ],
)
def test_bad_settings_name_the_setting_and_the_accepted_values(settings, message):
    with pytest.raises(archgen.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LatencySettings(**settings)


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(archgen.SpecError, match="unknown setting latency.thread; latency has: source, device, threads"):
        load_settings(LatencySettings, "latency", {"thread": 2})


def test_cuda_without_a_gpu_is_a_short_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = LatencySettings(device="cuda")
    with pytest.raises(archgen.SpecError, match="latency.device=cuda but no CUDA GPU is available here"):
        measure(torch.nn.Identity(), 3, (8, 8), settings)
    assert fingerprint(settings)["device"] == "cuda"


def test_side_by_side_timing_runs_the_models_round_robin():
    order = []

    class Probe(torch.nn.Module):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def forward(self, x):
            order.append(self.tag)
            return x

    probes = [(Probe(tag), 3, (4, 4)) for tag in "abc"]
    results = measure_side_by_side(probes, LatencySettings(warmup=1, repeats=4))
    # warm-up, then rounds whose order rotates: nobody runs twice in a row, everybody follows everybody
    assert "".join(order) == "abc" + "abc" + "bca" + "cab" + "abc"
    assert [r.repeats for r in results] == [4, 4, 4]
