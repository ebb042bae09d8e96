"""The built module: a tree that follows the spec, logits, features and features-only mode."""

from __future__ import annotations

import pytest
import torch

import archgen

BACKBONES = ["mbv1", "mbv2", "mbv3_large", "mbv3_small"]


@pytest.mark.parametrize("name", BACKBONES)
def test_features_only_returns_the_stage_maps_feature_info_describes(name):
    model = archgen.create_model(name, features_only=True, input_size=128).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        feats = model(x)
    assert len(feats) == len(model.feature_info) == model.spec.num_stages
    for f, info in zip(feats, model.feature_info):
        assert f.shape[1] == info["num_chs"]
        assert f.shape[-1] == -(-128 // info["reduction"])  # same-padded strides: ceil(size / reduction)
    assert [i["reduction"] for i in model.feature_info] == sorted(i["reduction"] for i in model.feature_info)
    assert len(model.head) == 0


def test_out_indices_select_stages_and_bad_ones_are_refused():
    model = archgen.create_model("mbv3_large", features_only=True, out_indices=(2, -1), input_size=64).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [40, 160]
    assert [i["module"] for i in model.feature_info] == ["stages.2", "stages.4"]
    with pytest.raises(archgen.SpecError, match="out_indices"):
        archgen.create_model("mbv3_large", features_only=True, out_indices=(7,))


def test_forward_features_then_head_is_forward():
    model = archgen.create_model("mbv3_small", input_size=96).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features == model.feature_info[-1]["num_chs"]
        assert torch.equal(model.forward_head(feats), model(x))


@pytest.mark.parametrize("name", BACKBONES)
def test_module_tree_follows_the_flat_block_list(name):
    spec = archgen.load_spec(name)
    model = archgen.build(spec)
    top = [n for n, _ in model.named_children()]
    assert top == ["stem", "stages", "head"]
    block_modules = {n for n, _ in model.named_modules() if n.count(".") == (2 if n.startswith("stages.") else 1)}
    assert block_modules == {b.name for b in spec.blocks}
    for b in spec.blocks:
        assert type(model.get_submodule(b.name)) is archgen.BLOCKS.get(b.type)


def test_knobs_change_the_network_as_asked():
    base = archgen.load_spec("mbv2")
    deeper = archgen.load_spec("mbv2", depth_mult=1.5)
    assert len(deeper.blocks) > len(base.blocks)
    # each row's n becomes ceil(1.5 n): 1,2,3,4,3,3,1 -> 2,3,5,6,5,5,2
    assert sum(b.type == "ir" for b in deeper.blocks) == 2 + 3 + 5 + 6 + 5 + 5 + 2
    ten = archgen.create_model("mbv2", num_classes=10, in_chans=1, input_size=64).eval()
    with torch.no_grad():
        assert ten(torch.randn(3, 1, 64, 64)).shape == (3, 10)
    drop = archgen.load_spec("mbv2", dropout=0.5)
    assert [b.args["p"] for b in drop.blocks if b.type == "dropout"] == [0.5]
