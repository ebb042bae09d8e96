"""Shared test helpers."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from archgen.cost.lut import CACHE_ENV


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine weights, so that eval-mode
    logits depend on each of them (a freshly built BN is close to the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _latency_cache(tmp_path_factory: pytest.TempPathFactory):
    """Latency tables the tests build (in-process and in the CLIs they start) go to a temporary
    directory, never into the user's ~/.cache."""
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("archgen-cache"))
    yield
    if before is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = before


def calibrate_bn(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Give every BatchNorm the statistics of the activations ``x`` produces and random affine
    weights, as a trained network has: eval-mode logits then depend on every BN and keep a
    realistic scale (random running statistics make deep networks' logits explode)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
        model.train()(x)
    return model.eval()
