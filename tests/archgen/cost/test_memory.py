"""The memory estimate (``archgen.cost.memory``): exact weights, the feature maps of a real forward
pass, nothing allocated, and the one-line refusal above ``max_memory_gb``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import archgen
from archgen.cost.memory import BYTES, LIVE_MAPS, OPTIMISER_COPIES, check_max_memory_gb, check_memory, estimate

REPO = Path(__file__).resolve().parents[3]


def _real_maps(model: nn.Module, spec: archgen.ModelSpec, batch: int) -> list[int]:
    """Every leaf module's output size in a real forward pass (training mode)."""
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda m, a, out: sizes.append(out.numel()))
             for m in model.modules() if next(m.children(), None) is None]
    with torch.no_grad():
        model.train()(torch.randn(batch, spec.in_chans, *spec.input_size))
    for h in hooks:
        h.remove()
    return sizes


@pytest.mark.parametrize("name", ["lenet5", "mbv3_small", "resnet18", "densenet121", "vovnet27_slim"])
def test_the_estimate_counts_the_real_networks_weights_and_feature_maps(name):
    spec = archgen.load_spec(name, input_size=64)
    model = archgen.build(spec)
    values = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    maps = _real_maps(model, spec, batch=2)
    trains, runs = estimate(spec, batch=2, training=True), estimate(spec, batch=2, training=False)
    assert trains.weights == OPTIMISER_COPIES * values * BYTES and runs.weights == values * BYTES
    assert trains.activations == sum(maps) * BYTES
    assert runs.activations == LIVE_MAPS * max(maps) * BYTES
    assert estimate(spec, batch=8, training=True).activations == 4 * trains.activations


def test_a_network_too_large_for_the_machine_is_estimated_without_being_allocated():
    # VGG-16 at 8,192x8,192: its first feature maps alone are 17 GB, counted on the meta device in a moment
    spec = archgen.load_spec("vgg16", input_size=8192)
    need = estimate(spec, batch=4, training=True)
    assert need.activations > 4 * 2 * 64 * 8192 * 8192 * BYTES  # at least the two 64-channel convs' maps
    assert estimate(spec, batch=1, training=False).activations == LIVE_MAPS * 64 * 8192 * 8192 * BYTES
    with pytest.raises(archgen.SpecError, match=r"^model vgg16: needs an estimated \d+\.\d GB to train at batch 4 "
                                                r"\(weights.*\), above this machine's memory, [\d.]+ GB"):
        check_memory(spec, 4, True, max_memory_gb=None)


def test_max_memory_gb_bounds_the_estimate_and_is_checked():
    spec = archgen.load_spec("mbv3_small")
    check_memory(spec, 1, False, max_memory_gb=1.0)
    with pytest.raises(archgen.SpecError, match=r"^model mbv3_small: needs an estimated [\d.]+ GB to train at batch 64 "
                                                r"\(weights, gradients and optimiser state [\d.]+ MB, feature "
                                                r"maps [\d.]+ GB\), above max_memory_gb=1$"):
        check_memory(spec, 64, True, max_memory_gb=1.0)
    for bad in (0, -1, float("inf"), "abc", True):
        with pytest.raises(archgen.SpecError, match="^max_memory_gb must be a positive number of GB or null"):
            check_max_memory_gb(bad)


def test_the_cli_refuses_a_network_the_machine_cannot_hold_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "archgen", "model=vgg16", "model.input_size=8192",
                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("archgen: error: model vgg16: needs an estimated ")
    assert "above this machine's memory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "summary.json").exists()
