"""Parameters and multiply-adds (MACs) of a built network, per block.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), run on the meta
device so that no arithmetic is done: convolutions and matrix products are counted, as the
papers count multiply-adds; element-wise ops (activations, BN, residual adds) are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..blocks import BLOCKS
from ..builder import ArchNet, build
from ..ir import BlockConfig
from ..layers.context import BuildContext
from ..spec import ModelSpec
from .cache import SpecCache


@dataclass(frozen=True)
class BlockCost:
    """Cost of one block of the flat list."""

    name: str
    params: int
    macs: int


@dataclass(frozen=True)
class ModelCost:
    """Total and per-block cost of a network at the spec's input size and batch 1."""

    params: int
    macs: int
    blocks: tuple[BlockCost, ...]


def count(spec: ModelSpec, model: ArchNet | None = None) -> ModelCost:
    """Count parameters and MACs of the network ``spec`` describes.

    ``model`` is only used for the parameter count when given; MACs are always measured on
    a meta-device copy so that nothing is computed. Without ``model``, a network counted before
    (the same shapes, ``ModelSpec.key``) is not counted again, and the network is counted block by
    block, a block counted before not again: a search's points share most of their blocks.
    """
    return _count(spec, model) if model is not None else _counted(spec)


def _count(spec: ModelSpec, model: ArchNet | None) -> ModelCost:
    with torch.device("meta"):
        meta_model = build(spec)
        x = torch.empty(1, spec.in_chans, *spec.input_size)
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        meta_model.eval()(x)
    flops = counter.get_flop_counts()
    root = type(meta_model).__name__
    per_block = []
    modules = dict((model or meta_model).named_modules())
    for b in spec.blocks:
        params = sum(p.numel() for p in modules[b.name].parameters())
        macs = sum(flops.get(f"{root}.{b.name}", {}).values()) // 2
        per_block.append(BlockCost(b.name, params, macs))
    total_params = sum(p.numel() for p in (model or meta_model).parameters())
    return ModelCost(params=total_params, macs=counter.get_total_flops() // 2, blocks=tuple(per_block))


def _count_blocks(spec: ModelSpec) -> ModelCost:
    """The sum of the blocks' counts: the network's forward is its blocks in a chain, nothing between
    them (``ArchNet``), so the totals are the same as counting it whole."""
    per_block = []
    for b in spec.blocks:
        key = (b.key(), spec.round_to)
        if key not in _block_counts:
            _block_counts[key] = _block_count(b, spec.round_to)
        per_block.append(BlockCost(b.name, *_block_counts[key]))
    return ModelCost(params=sum(b.params for b in per_block), macs=sum(b.macs for b in per_block), blocks=tuple(per_block))


_block_counts: dict[tuple[str, int], tuple[int, int]] = {}  # by BlockConfig.key: a space has a few hundred blocks


def _block_count(block: BlockConfig, round_to: int) -> tuple[int, int]:
    """One block's parameters and MACs, built alone on the meta device (``round_to`` sizes SE squeezes)."""
    with torch.device("meta"):
        module = BLOCKS.get(block.type)(block, BuildContext(round_to=round_to))
        x = torch.empty(1, block.in_chs, *(block.in_size or ()))
    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.no_grad():
        module.eval()(x)
    return sum(p.numel() for p in module.parameters()), counter.get_total_flops() // 2


_counted = SpecCache(_count_blocks)  # a search counts a network when it is evaluated and reported
