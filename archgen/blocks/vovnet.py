"""VoVNet blocks: the one-shot aggregation (OSA) module and its stage row.

* ``osa``: one row of VoVNet's Table 1 (Lee et al. 2019, "An Energy and GPU-Computation
  Efficient Backbone Network for Real-Time Object Detection"), an OSA stage, columns
  ``stage_ch concat_ch block_per_stage layer_per_block s``: channels of each 3x3 conv,
  channels of the 1x1 aggregation conv, OSA modules in the stage, 3x3 convs per module,
  and the stride (2: the stage opens with Table 1's "3x3 max pool, stride=2").
  VoVNetV2's additions (Lee & Park 2020, "CenterMask", Sec. 3.1: identity mapping and
  effective SE) and timm's depthwise variant are row switches.
* ``sepconv``: timm's ``SeparableConvNormAct`` (depthwise k x k conv, pointwise 1x1 conv,
  one BN, activation), the stem convs of the depthwise VoVNets.

Modules register their tensors in the order of timm's ``OsaBlock`` (``conv_reduction``,
``conv_mid``, ``conv_concat``, ``attn``), which is also the order of the authors'
``_OSA_module`` (``layers``, ``concat``), so either reference's weights map onto them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import rows
from ..ir import BlockConfig
from ..layers.activations import make_act
from ..layers.context import BuildContext
from ..layers.conv import ConvNormAct
from ..layers.se import EffectiveSE
from .base import Block, Expander, SequentialBlock, register_block


class SeparableConvNormAct(nn.Sequential):
    """Depthwise k x k conv (``conv_dw``) -> pointwise 1x1 conv (``conv_pw``) -> BN -> act,
    both convs without bias: timm's ``SeparableConvNormAct``, in its tensor order."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, ctx: BuildContext, act: str | None) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel, stride, (kernel - 1) // 2, groups=in_chs, bias=False)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn = ctx.norm(out_chs)
        if act is not None:
            self.act = make_act(act)


@register_block("sepconv")
class SepConv(SequentialBlock):
    """A depthwise-separable conv layer with one BN (stem rows of timm's ``ese_vovnet19b_dw``)."""

    @dataclass(frozen=True, kw_only=True)
    class Row:
        c: int = rows.channels("output channels of the pointwise conv")
        k: int = rows.kernel("depthwise kernel size", 3)
        s: int = rows.stride("stride of the depthwise conv", 1)
        nl: str = rows.activation("activation after the BN", "relu")

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        self.conv = SeparableConvNormAct(cfg.in_chs, cfg.out_chs, cfg.kernel or 3, cfg.stride, ctx, cfg.act)


@register_block("osa")
class OSA(Block):
    """One OSA module (Fig. 1 (b) of the VoVNet paper).

    ``layer_per_block`` 3x3 conv-BN-ReLU layers in a chain (the first maps the input to
    ``stage_ch``), the input and every layer output concatenated, a 1x1 conv-BN-ReLU to
    ``concat_ch``, then optionally VoVNetV2's eSE (one 1x1 conv on the pooled features,
    hard-sigmoid gate) and identity mapping (``+ x``). With ``depthwise`` the layers are
    depthwise-separable (``SeparableConvNormAct``), preceded by a 1x1 conv-BN-ReLU
    reduction to ``stage_ch`` when the input width differs; the concatenation still takes
    the unreduced input (timm's ``OsaBlock``).
    """

    table_fields = {"stage_ch": "exp", "concat_ch": "out", "layer_per_block": "arg", "depthwise": "arg"}

    @dataclass(frozen=True, kw_only=True)
    class Row:
        stage_ch: int = rows.channels("channels of each 3x3 conv of an OSA module")
        concat_ch: int = rows.channels("output channels: the 1x1 conv after the concatenation")
        block_per_stage: int = rows.repeats("OSA modules in the stage (Table 1's 'x n')")
        layer_per_block: int = rows.integer("3x3 convs per OSA module (5 in VoVNet-27/39/57, 3 in VoVNet-19)")
        s: int = rows.stride("2: the stage opens with a 3x3/2 max-pool (ceil_mode); 1: no pool", 1)
        residual: bool = rows.flag("VoVNetV2 identity mapping: + x on every OSA module but the stage's first", False)
        ese: bool = rows.flag("VoVNetV2 effective SE after the 1x1 conv of the stage's last OSA module", False)
        depthwise: bool = rows.flag("depthwise-separable 3x3 layers after a 1x1 reduction (timm's *_dw)", False)

    @classmethod
    def expand(cls, row: "OSA.Row", ex: Expander) -> None:
        if row.s == 2:  # Table 1's "3x3 max pool, stride=2" opens the stage; ceil_mode as the authors' code
            ex.emit("maxpool", ex.chs, stride=2, kernel=3, p=0, ceil=True)
        stage_ch, concat_ch, n = ex.channels(row.stage_ch), ex.channels(row.concat_ch), ex.repeats(row.block_per_stage)
        for i in range(n):
            ex.emit(
                cls.type_name,
                concat_ch,
                kernel=3,
                exp=stage_ch,
                act="relu",
                layer_per_block=row.layer_per_block,
                residual=row.residual and i > 0,  # the first module's input is the previous stage's width
                ese=row.ese and i == n - 1,  # timm: attention on the last module of each stage
                depthwise=row.depthwise,
            )

    def __init__(self, cfg: BlockConfig, ctx: BuildContext) -> None:
        super().__init__(cfg, ctx)
        a = cfg.args
        mid, layers, act = cfg.exp or cfg.out_chs, a["layer_per_block"], cfg.act
        self.residual = a["residual"]
        reduce = a["depthwise"] and cfg.in_chs != mid
        self.conv_reduction = ConvNormAct(cfg.in_chs, mid, 1, 1, ctx, act=act) if reduce else nn.Identity()
        chs = mid if a["depthwise"] else cfg.in_chs
        mids = []
        for _ in range(layers):
            if a["depthwise"]:
                mids.append(SeparableConvNormAct(chs, mid, 3, 1, ctx, act))
            else:
                mids.append(ConvNormAct(chs, mid, 3, 1, ctx, act=act))
            chs = mid
        self.conv_mid = nn.ModuleList(mids)
        self.conv_concat = ConvNormAct(cfg.in_chs + layers * mid, cfg.out_chs, 1, 1, ctx, act=act)
        self.attn = EffectiveSE(cfg.out_chs, "hsigmoid") if a["ese"] else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        y = self.conv_reduction(x)
        for layer in self.conv_mid:
            y = layer(y)
            outputs.append(y)
        y = self.attn(self.conv_concat(torch.cat(outputs, 1)))
        return x + y if self.residual else y


__all__ = ["OSA", "SepConv", "SeparableConvNormAct"]
