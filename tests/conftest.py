"""Shared test helpers."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from torch import nn

import archgen
from archgen.cost.lut import CACHE_ENV
from archgen.zoo import model_path


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


def zoo_table(name: str) -> dict:
    """A zoo spec file as plain data, to edit in a test."""
    return yaml.safe_load(model_path(name).read_text())


def block_outputs(model: archgen.ArchNet, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch) of every block of the flat list, from one forward."""
    shapes: dict[str, tuple[int, ...]] = {}
    for b in model.spec.blocks:
        model.get_submodule(b.name).register_forward_hook(
            lambda m, i, o, name=b.name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    with torch.no_grad():
        model.eval()(x)
    return shapes


def reference_logit_diff(name: str, reference: nn.Module, size: int, batch: int = 2) -> float:
    """Largest |logit difference| between a zoo model carrying ``reference``'s weights and the
    reference itself (random BN statistics, so that every BN counts), at ``size`` x ``size``."""
    reference = randomize_bn(reference).eval()
    model = archgen.create_model(name, input_size=size)
    archgen.load_reference_weights(model, reference.state_dict())
    x = torch.randn(batch, model.spec.in_chans, size, size)
    with torch.no_grad():
        diff = (model.eval()(x) - reference(x)).abs().max().item()
    print(f"{name} at {size}x{size}: max |logit diff| = {diff:.3g}")
    return diff


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


def user_block_module(folder: Path, module: str, type_name: str) -> dict[str, str]:
    """Write ``folder/module.py``, a user's block type registered from outside the package as
    ``type_name`` (two 3x3 convs, ReLU after each; rows ``c n s``), and return the environment
    that puts ``folder`` on a subprocess's import path."""
    (folder / f"{module}.py").write_text(textwrap.dedent(f'''
        from dataclasses import dataclass
        from torch import nn
        import archgen
        from archgen import rows

        @archgen.register_block({type_name!r})
        class DoubleConv(archgen.Block):
            """Two 3x3 convs with ReLU (a user's block)."""

            @dataclass(frozen=True, kw_only=True)
            class Row:
                c: int = rows.channels("output channels")
                n: int = rows.repeats()
                s: int = rows.stride()

            def __init__(self, cfg, ctx):
                super().__init__(cfg, ctx)
                self.a = nn.Conv2d(cfg.in_chs, cfg.out_chs, 3, cfg.stride, 1)
                self.b = nn.Conv2d(cfg.out_chs, cfg.out_chs, 3, 1, 1)
                self.act = nn.ReLU()

            @classmethod
            def output_size(cls, cfg):
                return tuple((x - 1) // cfg.stride + 1 for x in cfg.in_size)

            def forward(self, x):
                return self.act(self.b(self.act(self.a(x))))
    '''))
    return {"PYTHONPATH": f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def full_disk(max_bytes: int) -> Callable[[], None]:
    """A subprocess's ``preexec_fn``: its files may not grow past ``max_bytes`` (RLIMIT_FSIZE), so a
    write past it fails with EFBIG where a full disk's fails with ENOSPC, at the same place."""
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit
