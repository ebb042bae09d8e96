"""NetAdapt's weight inheritance: kept blocks keep their weights, shrunk ones the largest-L1 slice."""

from __future__ import annotations

import pytest
import torch

from archgen import build
from archgen.inherit import fit_kernel, inherit, top_l1
from archgen.space import Space

from ..conftest import randomize_bn


@pytest.fixture(scope="module")
def space():
    return Space("mbv3_large_stage", input_size=32, in_chans=1, num_classes=10)


@pytest.fixture(scope="module")
def base(space):
    return dict(space.nearest_to_base().params)


@pytest.fixture(scope="module")
def parent(space, base):
    torch.manual_seed(1)
    return randomize_bn(build(space.apply(base)), seed=1).eval()


def _child(space, base, parent, **change):
    child = build(space.apply({**base, **change}))
    got = inherit(parent, child)
    child.load_state_dict(got.state_dict)  # strict: every key, every shape
    return child.eval(), got


def _stage(model, s):
    return [m for m in model.stages[s]]


def test_an_unchanged_network_keeps_every_weight(space, base, parent):
    child, got = _child(space, base, parent)
    assert set(got.blocks.values()) == {"kept"}
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(child(x), parent(x))


def test_a_narrower_stage_keeps_the_largest_l1_channels_in_every_block_that_touches_them(space, base, parent):
    child, got = _child(space, base, parent, s3_width=0.5)
    sliced = {n for n, how in got.blocks.items() if how == "sliced"}
    assert sliced == {f"stages.3.{i}" for i in range(len(child.stages[3]))} | {"stages.4.0"}
    for name, how in got.blocks.items():  # every other block is its parent's, tensor for tensor
        if how == "kept":
            p, c = parent.get_submodule(name).state_dict(), child.get_submodule(name).state_dict()
            assert p.keys() == c.keys() and all(torch.equal(p[k], c[k]) for k in p)
    # the first stream of stage 3 (blocks 0-3 add into one tensor): its channels, by summed projection L1
    p_blocks, c_blocks = _stage(parent, 3), _stage(child, 3)
    width = c_blocks[0].layers.pwl.conv.weight.shape[0]
    norms = sum(b.layers.pwl.conv.weight.abs().flatten(1).sum(1) for b in p_blocks[:4])
    keep = torch.topk(norms, width).indices.sort().values
    for p, c in zip(p_blocks[:4], c_blocks[:4]):
        hidden = c.layers.dw.conv.weight.shape[0]
        h = top_l1(p.layers.pw.conv.weight, hidden)
        assert torch.equal(c.layers.pwl.conv.weight, p.layers.pwl.conv.weight[keep][:, h])
        assert torch.equal(c.layers.pwl.bn.running_mean, p.layers.pwl.bn.running_mean[keep])
        assert torch.equal(c.layers.dw.conv.weight, p.layers.dw.conv.weight[h])
    # the next block reads those channels: block 1's expansion conv takes block 0's kept outputs
    p1, c1 = p_blocks[1], c_blocks[1]
    h1 = top_l1(p1.layers.pw.conv.weight, c1.layers.pw.conv.weight.shape[0])
    assert torch.equal(c1.layers.pw.conv.weight, p1.layers.pw.conv.weight[h1][:, keep])


def test_a_smaller_kernel_keeps_the_window_of_largest_l1_and_a_larger_one_computes_the_same(space, base, parent):
    child, got = _child(space, base, parent, s2_k=3)
    assert got.blocks["stages.2.0"] == "sliced"
    p_dw, c_dw = parent.stages[2][0].layers.dw.conv.weight, child.stages[2][0].layers.dw.conv.weight
    taps = p_dw.abs().sum(dim=(0, 1))  # 5x5 -> the 3x3 window of the largest summed |w|
    sums = {(r, c): taps[r:r + 3, c:c + 3].sum().item() for r in range(3) for c in range(3)}
    r, c = max(sums, key=sums.get)
    assert torch.equal(c_dw, p_dw[..., r:r + 3, c:c + 3])
    # a larger kernel is the old one padded with zero taps: the same function
    wider, _ = _child(space, base, parent, s2_k=7)
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(wider(x), parent(x), atol=1e-6)
    assert fit_kernel(p_dw, 5) is p_dw


def test_fewer_blocks_and_no_se_drop_weights_and_keep_the_rest(space, base, parent):
    shallower, got = _child(space, base, parent, s4_depth=-1)
    assert len(shallower.stages[4]) == len(parent.stages[4]) - 1 and set(got.blocks.values()) == {"kept"}
    plain, got = _child(space, base, parent, s2_se=False)
    block = plain.stages[2][0]
    assert "se" not in dict(block.layers.named_children()) and got.blocks["stages.2.0"] == "sliced"
    assert torch.equal(block.layers.pwl.conv.weight, parent.stages[2][0].layers.pwl.conv.weight)


def test_a_block_that_changes_form_starts_fresh(space, base, parent):
    # expansion 1: MnasNet's SepConv, no expansion conv; nothing of the old block fits it
    child, got = _child(space, base, parent, s1_exp=1)
    assert got.blocks["stages.1.0"] == got.blocks["stages.1.1"] == "fresh"
    assert got.count("fresh") == 2 and got.count("kept") == len(got.blocks) - 2
