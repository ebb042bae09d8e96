"""ShuffleNetV2's unit against torchvision's InvertedResidual, its channel rules, and the zoo spec."""

from __future__ import annotations

import pytest
import torch
import torchvision.models.shufflenetv2 as tv_shufflenet

import archgen
from archgen.deploy import deploy
from archgen.ir import BlockConfig
from archgen.layers.context import BuildContext
from tests.conftest import randomize_bn, zoo_table


def _unit(in_chs: int, out_chs: int, stride: int, size: int = 8) -> archgen.Block:
    cfg = BlockConfig(type="shuffle", name="stages.0.0", in_chs=in_chs, out_chs=out_chs, in_size=(size, size),
                      out_size=None, stride=stride, kernel=3, act="relu")
    return archgen.BLOCKS.get("shuffle")(cfg, BuildContext())


@pytest.mark.parametrize(("in_chs", "out_chs", "stride"), [(24, 116, 2), (116, 116, 1)])
def test_unit_equals_torchvision_with_its_weights(in_chs, out_chs, stride):
    ref = randomize_bn(tv_shufflenet.InvertedResidual(in_chs, out_chs, stride)).eval()
    ours = _unit(in_chs, out_chs, stride).eval()
    theirs = [v.shape for v in ref.state_dict().values()]
    assert [v.shape for v in ours.state_dict().values()] == theirs  # same tensors, same order
    ours.load_state_dict(dict(zip(ours.state_dict(), ref.state_dict().values())))
    x = torch.randn(2, in_chs, 8, 8)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


def test_channel_shuffle_equals_torchvision():
    x = torch.randn(2, 12, 3, 3)
    assert torch.equal(archgen.blocks.shufflenet.channel_shuffle(x, 2), tv_shufflenet.channel_shuffle(x, 2))


def test_stride_1_units_keep_the_width_a_search_gives_them():
    spec = archgen.load_spec("shufflenet_v2_x1_0", input_size=64)
    cls = archgen.BLOCKS.get("shuffle")
    unit1, unit2 = spec.blocks[3], spec.blocks[2]
    assert (unit1.stride, unit2.stride) == (1, 2)
    assert cls.output_chs(unit1, 128) == 128 and cls.output_chs(unit2, 128) == unit2.out_chs


def test_inference_form_folds_every_bn():
    spec = archgen.load_spec("shufflenet_v2_x1_0", input_size=64)
    model = randomize_bn(archgen.build(spec)).eval()
    fast = deploy(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"rows": [[117, 4, 2]]}, r"body row 1 \(shuffle\): field 'c' must be an even number of channels .*got 117"),
        ({"rows": [[116, 1, 1]]}, r"body row 1 \(shuffle\): field 'c' must equal the input's 24 channels at stride 1"),
    ],
)
def test_bad_rows_name_the_row_and_field(edit, message):
    data = zoo_table("shufflenet_v2_x1_0")
    data["body"].update(edit)
    with pytest.raises(archgen.SpecError, match=message):
        archgen.load_spec(data, source="shufflenet_v2_x1_0")


def test_odd_width_after_width_mult_names_the_scaling():
    data = zoo_table("shufflenet_v2_x1_0")
    data["round_to"] = 1
    with pytest.raises(archgen.SpecError, match=r"body row 1 \(shuffle\): field 'c' .* got 87 \(116 x width_mult 0.75\)"):
        archgen.load_spec(data, source="shufflenet_v2_x1_0", width_mult=0.75)


def test_expanded_spec_with_an_odd_unit_is_refused_in_one_line():
    data = archgen.load_spec("shufflenet_v2_x1_0", input_size=64).to_dict()
    for i in range(2, 6):  # stage 0: its stride-2 unit and the three that keep its width
        data["blocks"][i]["out"] = data["blocks"][i + 1]["in"] = 115
    with pytest.raises(archgen.SpecError, match=r"blocks\[3\] \(stages.0.0, shuffle\): field 'out' must be an even"):
        archgen.build(archgen.load_spec(data))
