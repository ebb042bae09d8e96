"""Where a training runs: device and precision choice, CPU threads, the CUDA path where a GPU exists."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from archgen import SpecError, load_spec
from search.data import DataSettings, load_data
from search.device import Runtime, owned_cores, resolve_device, resolve_precision
from search.evaluators.naswot import NaswotSettings, naswot
from search.evaluators.train import TrainSettings, train
from search.parallel import pin

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSettings(limit=300))


def _small(data):
    return load_spec("mbv3_small", num_classes=data.num_classes, in_chans=data.in_chans, input_size=(data.size, data.size))


def test_auto_is_cuda_where_there_is_a_gpu_else_the_cpu():
    assert resolve_device("train.device", "auto").type == ("cuda" if CUDA else "cpu")
    assert resolve_device("train.device", "cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "", 0])
def test_an_unknown_device_lists_the_choices(name):
    with pytest.raises(SpecError, match=r"^train.device must be one of auto, cpu, cuda or cuda:<index>, got "):
        TrainSettings(device=name)


@pytest.mark.skipif(CUDA, reason="checks the message a machine without a GPU gives")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_one_line_before_anything_runs(name):
    settings = TrainSettings(device=name)  # a valid name: the check that needs the machine comes when it resolves
    with pytest.raises(SpecError) as err:
        settings.runtime()
    assert str(err.value) == f"train.device={name} but no CUDA GPU is available here; use train.device=cpu or train.device=auto"
    with pytest.raises(SpecError, match="naswot.device=cuda but no CUDA GPU"):
        NaswotSettings(device="cuda").runtime()


def test_precision_is_fp32_on_the_cpu_unless_asked_and_fp16_needs_cuda():
    cpu = torch.device("cpu")
    assert resolve_precision("train.precision", "auto", cpu) is None
    assert resolve_precision("train.precision", "bf16", cpu) is torch.bfloat16
    with pytest.raises(SpecError, match="train.precision=fp16 needs a CUDA device"):
        resolve_precision("train.precision", "fp16", cpu)
    with pytest.raises(SpecError, match="train.precision must be one of: auto, fp32, bf16, fp16, got 'half'"):
        TrainSettings(precision="half")


def test_the_thread_default_is_the_cores_this_process_owns():
    assert TrainSettings().threads is None and NaswotSettings().threads is None
    assert TrainSettings().runtime().threads == owned_cores() == len(os.sched_getaffinity(0))
    assert TrainSettings(threads=1).runtime().threads == 1
    before = os.sched_getaffinity(0)
    try:  # a worker pinned to its share of the cores trains with that many threads
        pin(0, len(before))
        assert owned_cores() == 1 and TrainSettings(device="cpu").runtime().threads == 1
        assert TrainSettings(device="cpu").runtime().describe() == "cpu, 1 thread, fp32, channels-last"
    finally:
        os.sched_setaffinity(0, before)


def test_pinned_workers_split_the_cores_without_overlap():
    before = os.sched_getaffinity(0)
    shares = []
    try:
        for worker in range(2):
            os.sched_setaffinity(0, before)
            pin(worker, 2)
            shares.append(os.sched_getaffinity(0))
    finally:
        os.sched_setaffinity(0, before)
    if len(before) >= 2:
        assert not shares[0] & shares[1] and shares[0] | shares[1] == before
    else:  # one core: both workers share it
        assert shares[0] == shares[1] == before


def test_a_cpu_training_leaves_torch_threads_and_determinism_as_it_found_them(digits):
    threads = torch.get_num_threads()
    train(_small(digits), digits, TrainSettings(epochs=1, batch_size=64, threads=1, device="cpu"))
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()


def test_a_bf16_cpu_training_trains(digits):
    result = train(_small(digits), digits, TrainSettings(epochs=1, batch_size=32, device="cpu", precision="bf16"))
    assert result.runtime == f"cpu, {owned_cores()} thread{'s' if owned_cores() != 1 else ''}, bf16, channels-last"
    assert 0 <= result.accuracy <= 1 and result.images_per_s > 0


def test_channels_last_trains_the_same_network(digits):
    spec, settings = _small(digits), TrainSettings(epochs=1, batch_size=32, device="cpu", threads=1, channels_last=False)
    plain = train(spec, digits, settings)
    nhwc = train(spec, digits, replace(settings, channels_last=True))
    assert nhwc.runtime.endswith("channels-last") and not plain.runtime.endswith("channels-last")
    # another memory layout sums in another order: the same training up to rounding
    assert nhwc.loss == pytest.approx(plain.loss, rel=0.05)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU; without one the settings checks above run instead")
def test_the_cuda_path_trains_with_mixed_precision_and_channels_last(digits):
    result = train(_small(digits), digits, TrainSettings(epochs=1, batch_size=32, device="cuda"))
    runtime = TrainSettings(device="cuda").runtime()
    assert runtime.channels_last and runtime.dtype in (torch.bfloat16, torch.float16)
    assert result.runtime.startswith("cuda") and 0.1 < result.accuracy <= 1 and result.images_per_s > 0
    # deterministic kernels repeat bit for bit on the same GPU
    exact = TrainSettings(epochs=1, batch_size=32, device="cuda", deterministic=True)
    assert train(_small(digits), digits, exact).accuracies == train(_small(digits), digits, exact).accuracies
    score = naswot(_small(digits), digits, NaswotSettings(device="cuda")).score
    assert score == pytest.approx(naswot(_small(digits), digits, NaswotSettings(device="cpu")).score, rel=1e-3)


def test_the_runtime_describes_itself():
    runtime = Runtime.resolve("train", device="cpu", precision="fp32", channels_last=False, threads=3)
    assert runtime.describe() == "cpu, 3 threads, fp32" and not runtime.channels_last
