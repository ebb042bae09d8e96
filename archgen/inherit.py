"""Weights carried from a network into a smaller one built from a related spec: NetAdapt's
proposals start from their parent's weights (Yang et al. 2018, "NetAdapt", Sec. 3 and
Algorithm 1) instead of from scratch.

Blocks are matched by name (``stages.3.1``: the module tree follows the flat block list):

* a block the child keeps as it was keeps its weights;
* a block that loses channels keeps those whose filters have the largest L1 norm, the rule
  NetAdapt takes from Li et al. 2017 ("Pruning Filters for Efficient ConvNets"). Channels are
  chosen once per tensor: the output channels of a block and of the residual blocks that add
  into the same stream are chosen together (their projections' L1 norms summed), and every
  layer that reads the tensor is sliced with the same indices;
* a depthwise kernel that shrinks keeps the k x k window of taps with the largest L1 norm
  over all its channels (one window for the layer, so the channels stay aligned); one that
  grows is padded with zero taps, which computes the same function;
* squeeze-and-excitation dropped is dropped; added, it starts from the child's initialisation;
* a block removed (a shallower stage) is dropped; a block the parent lacks, or whose form
  changed (an expansion conv added or removed), keeps the child's initialisation.

``inherit(parent, child)`` returns the child's state dict and, per block, what happened to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from .blocks.mobilenet import InvertedResidual
from .builder import ArchNet
from .ir import BlockConfig

Index = torch.Tensor | None  # parent channel indices a child tensor keeps, in order; None: all of them


@dataclass(frozen=True)
class Inherited:
    """The child's weights and, for each of its blocks, ``kept``, ``sliced`` or ``fresh``."""

    state_dict: dict[str, torch.Tensor]
    blocks: Mapping[str, str]

    def count(self, how: str) -> int:
        return sum(v == how for v in self.blocks.values())


def top_l1(weight: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` rows (filters, dim 0) of ``weight`` with the largest L1 norm, in ascending order."""
    norms = weight.detach().abs().flatten(1).sum(1) if weight.dim() > 1 else weight.detach().abs()
    return torch.topk(norms, n, sorted=False).indices.sort().values


def _take(t: torch.Tensor, dim: int, index: Index) -> torch.Tensor:
    return t if index is None else t.index_select(dim, index.to(t.device))


def fit_kernel(weight: torch.Tensor, k: int) -> torch.Tensor:
    """A (C, 1, K, K) depthwise kernel as (C, 1, k, k): the k x k window of the largest L1 norm
    (over all channels) when k < K, zero taps around it when k > K."""
    big = weight.shape[-1]
    if k == big:
        return weight
    if k > big:
        pad = (k - big) // 2
        return nn.functional.pad(weight, (pad, pad, pad, pad))
    # L1 of each k x k window, summed over the channels: a (K-k+1, K-k+1) map of window norms
    taps = weight.detach().abs().sum(dim=(0, 1))
    windows = taps.unfold(0, k, 1).unfold(1, k, 1).sum(dim=(-2, -1))
    row, col = divmod(int(windows.argmax()), windows.shape[1])
    return weight[..., row : row + k, col : col + k]


def _projection(module: nn.Module) -> torch.Tensor | None:
    """The weight whose rows write a block's output channels: an inverted residual's projection,
    a single-layer block's conv or linear."""
    if isinstance(module, InvertedResidual):
        return module.layers.pwl.conv.weight
    layer = _single_layer(module)
    return None if layer is None else layer[0]


def _single_layer(module: nn.Module) -> tuple[torch.Tensor, list[str], str] | None:
    """A block made of one dense conv or linear layer plus per-channel tensors (bias, BatchNorm):
    (its weight, the state dict keys of the per-channel tensors, the weight's key); else None."""
    state = module.state_dict()
    matrices = [k for k, v in state.items() if v.dim() >= 2]
    if len(matrices) != 1:
        return None
    layer = module.get_submodule(matrices[0].rsplit(".", 1)[0]) if "." in matrices[0] else module
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        return None
    weight = state[matrices[0]]
    per_channel = [k for k, v in state.items() if v.dim() == 1]
    if any(state[k].shape[0] != weight.shape[0] for k in per_channel):
        return None
    return weight, per_channel, matrices[0]


def inherit(parent: ArchNet, child: ArchNet) -> Inherited:
    """The child's state dict with every weight it can take from ``parent`` (see the module docstring)."""
    p_cfg = {b.name: b for b in parent.spec.blocks}
    out: dict[str, torch.Tensor] = dict(child.state_dict())
    how: dict[str, str] = {}
    streams = _streams(parent)
    chosen: dict[int, Index] = {}
    index: Index = None  # the parent channels that the tensor entering the next block holds
    for cfg in child.spec.blocks:
        module = child.get_submodule(cfg.name)
        if cfg.name not in p_cfg:
            how[cfg.name] = "fresh"
            index = None
            continue
        p_module, p_block = parent.get_submodule(cfg.name), p_cfg[cfg.name]
        # the channels this block's output keeps, chosen once for its stream: the residual
        # blocks that add into a tensor must keep the channels its first block keeps
        stream = streams[cfg.name]
        if stream not in chosen:
            chosen[stream] = None if cfg.out_chs == p_block.out_chs else _choose_stream(parent, streams, stream, cfg.out_chs)
        out_index = chosen[stream]
        if not any(True for _ in module.parameters()) and not any(True for _ in module.buffers()):
            how[cfg.name] = "kept"
            index = index if cfg.out_chs == cfg.in_chs else out_index
            continue
        if isinstance(module, InvertedResidual) and isinstance(p_module, InvertedResidual):
            state = _inverted_residual(p_module, module, index, out_index, cfg)
        else:
            state = _generic(p_module, module, index, out_index)
        if state is None:
            how[cfg.name] = "fresh"
        else:
            p_state = p_module.state_dict()
            same = state.keys() == p_state.keys() and all(torch.equal(state[k], p_state[k]) for k in state)
            how[cfg.name] = "kept" if same else "sliced"
            out.update({f"{cfg.name}.{k}": v.detach().clone() for k, v in state.items()})
        index = out_index
    return Inherited(out, how)


def _streams(parent: ArchNet) -> dict[str, int]:
    """Block name -> stream id: a block and the residual blocks after it that add into its output."""
    streams: dict[str, int] = {}
    current = -1
    for cfg in parent.spec.blocks:
        module = parent.get_submodule(cfg.name)
        if not getattr(module, "use_res", False):  # an identity shortcut adds into the stream before it
            current += 1
        streams[cfg.name] = current
    return streams


def _choose_stream(parent: ArchNet, streams: Mapping[str, int], stream: int, n: int) -> Index:
    """The ``n`` output channels of a stream with the largest L1 norm, summed over its blocks' projections."""
    members = [b for b, s in streams.items() if s == stream]
    weights = [w for w in (_projection(parent.get_submodule(b)) for b in members) if w is not None]
    if not weights or any(w.shape[0] != weights[0].shape[0] for w in weights) or n > weights[0].shape[0]:
        return torch.arange(n)  # channels with no filter to rank them by (or more than the parent had): the first n
    return top_l1(torch.stack([w.detach().abs().flatten(1).sum(1) for w in weights]).sum(0), n)


def _generic(p_module: nn.Module, module: nn.Module, in_index: Index, out_index: Index) -> dict[str, torch.Tensor] | None:
    """A block's state copied (same shapes) or sliced (a single conv / linear layer); None: it cannot be."""
    p_state, state = p_module.state_dict(), module.state_dict()
    if p_state.keys() != state.keys():
        return None
    if in_index is None and out_index is None and all(p_state[k].shape == v.shape for k, v in state.items()):
        return dict(p_state)
    layer = _single_layer(p_module)
    if layer is None:
        return None
    _, per_channel, weight_key = layer
    new = {k: _take(p_state[k], 0, out_index) for k in per_channel}
    new[weight_key] = _take(_take(p_state[weight_key], 0, out_index), 1, in_index)
    new.update({k: v for k, v in p_state.items() if k not in new})  # counters (num_batches_tracked)
    return new if all(new[k].shape == v.shape for k, v in state.items()) else None


def _inverted_residual(p: InvertedResidual, c: InvertedResidual, in_index: Index, out_index: Index,
                       cfg: BlockConfig) -> dict[str, torch.Tensor] | None:
    """An inverted residual's state, with its hidden channels, kernel, SE and projection fitted to the child's."""
    p_layers, c_layers = dict(p.layers.named_children()), dict(c.layers.named_children())
    if ("pw" in p_layers) != ("pw" in c_layers):  # the expansion conv added or removed: another form of block
        return None
    p_state = p.state_dict()
    hidden = c.layers.dw.conv.weight.shape[0]
    if "pw" in c_layers:
        pw = p_state["layers.pw.conv.weight"]
        h_index: Index = None if pw.shape[0] == hidden else top_l1(pw, hidden)
    else:
        h_index = in_index  # no expansion: the depthwise conv runs on the block's input channels
    new: dict[str, torch.Tensor] = {}

    def conv_norm(prefix: str, rows: Index, cols: Index) -> None:
        for key, value in p_state.items():
            if key.startswith(f"layers.{prefix}."):
                if key.endswith("conv.weight"):
                    value = _take(_take(value, 0, rows), 1, cols)
                elif value.dim() == 1:
                    value = _take(value, 0, rows)
                new[key] = value

    if "pw" in c_layers:
        conv_norm("pw", h_index, in_index)
    conv_norm("dw", h_index, None)
    new["layers.dw.conv.weight"] = fit_kernel(new["layers.dw.conv.weight"], cfg.kernel or 3)
    if "se" in c_layers and "se" in p_layers:
        fc1 = p_state["layers.se.fc1.weight"]
        squeeze = c.layers.se.fc1.weight.shape[0]
        s_index = None if fc1.shape[0] == squeeze else top_l1(_take(fc1, 1, h_index), squeeze)
        new["layers.se.fc1.weight"] = _take(_take(fc1, 0, s_index), 1, h_index)
        new["layers.se.fc1.bias"] = _take(p_state["layers.se.fc1.bias"], 0, s_index)
        new["layers.se.fc2.weight"] = _take(_take(p_state["layers.se.fc2.weight"], 0, h_index), 1, s_index)
        new["layers.se.fc2.bias"] = _take(p_state["layers.se.fc2.bias"], 0, h_index)
    elif "se" in c_layers:  # SE added: the child's own initialisation
        new.update({k: v for k, v in c.state_dict().items() if k.startswith("layers.se.")})
    conv_norm("pwl", out_index, h_index)
    state = c.state_dict()
    if new.keys() != state.keys() or any(new[k].shape != v.shape for k, v in state.items()):
        return None
    return new
