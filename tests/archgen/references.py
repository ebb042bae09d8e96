"""The reference implementation of every zoo model, built for real in the tests.

torchvision and timm models come from the installed packages; LeNet-5, NiN and
vovnet27_slim, which no package ships, from the transcriptions in ``ref_impl``.
"""

from __future__ import annotations

from typing import Callable

import timm
import torchvision.models as tvm
from torch import nn


def _d2l(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        from .ref_impl import d2l

        return getattr(d2l, name)()

    return make


def _authors_nasbench_macro() -> nn.Module:
    from .ref_impl import nasbench_macro_authors

    return nasbench_macro_authors.network("22222222")


def _authors_vovnet27_slim() -> nn.Module:
    from .ref_impl import vovnet_authors

    return vovnet_authors.vovnet27_slim()


REFERENCES: dict[str, Callable[[], nn.Module]] = {
    "lenet5": _d2l("lenet5"),
    "alexnet": tvm.alexnet,
    "vgg11": tvm.vgg11,
    "vgg16": tvm.vgg16,
    "nin": _d2l("nin"),
    "googlenet": lambda: tvm.googlenet(aux_logits=False, init_weights=False),
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "resnet50": tvm.resnet50,
    "densenet121": tvm.densenet121,
    "mbv1": lambda: timm.create_model("mobilenetv1_100"),
    "mbv2": tvm.mobilenet_v2,
    "mbv3_large": tvm.mobilenet_v3_large,
    "mbv3_small": tvm.mobilenet_v3_small,
    "vovnet27_slim": _authors_vovnet27_slim,
    "vovnet39": lambda: timm.create_model("vovnet39a"),
    "vovnet57": lambda: timm.create_model("vovnet57a"),
    "ese_vovnet39b": lambda: timm.create_model("ese_vovnet39b"),
    "resnext50_32x4d": tvm.resnext50_32x4d,
    "wide_resnet50_2": tvm.wide_resnet50_2,
    "shufflenet_v2_x1_0": tvm.shufflenet_v2_x1_0,
    "efficientnet_b0": tvm.efficientnet_b0,
    "efficientnet_b1": tvm.efficientnet_b1,
    "efficientnet_b2": tvm.efficientnet_b2,
    "efficientnet_b3": tvm.efficientnet_b3,
    "efficientnet_b4": tvm.efficientnet_b4,
    "efficientnet_b5": tvm.efficientnet_b5,
    "efficientnet_b6": tvm.efficientnet_b6,
    "efficientnet_b7": tvm.efficientnet_b7,
    "mnasnet_b1": tvm.mnasnet1_0,
    "mnasnet_a1": lambda: timm.create_model("semnasnet_100"),  # timm's current name of mnasnet_a1
    "nasbench_macro": _authors_nasbench_macro,
}

# Models whose reference weights load into the generated model and give the same logits.
PORTED = ["mbv1", "mbv2", "mbv3_large", "mbv3_small", "resnet18", "vovnet39", "ese_vovnet39b", "resnext50_32x4d", "wide_resnet50_2", "shufflenet_v2_x1_0",
          "efficientnet_b0", "mnasnet_a1", "mnasnet_b1", "nasbench_macro"]

# timm models that are the same network as a zoo spec, whose checkpoints load into it too
# (tests/archgen/test_weights.py); mbv1 and the VoVNets' references are these already.
TIMM: dict[str, str] = {
    "mbv1": "mobilenetv1_100",
    "mbv2": "mobilenetv2_100",
    "mbv3_large": "mobilenetv3_large_100",
    "mbv3_small": "mobilenetv3_small_100",
    "vovnet39": "vovnet39a",
    "vovnet57": "vovnet57a",
    "ese_vovnet39b": "ese_vovnet39b",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "resnext50_32x4d": "resnext50_32x4d",
    "wide_resnet50_2": "wide_resnet50_2",
    "mnasnet_a1": "semnasnet_100",
    "mnasnet_b1": "mnasnet_100",
    **{f"efficientnet_b{b}": f"efficientnet_b{b}" for b in range(8)},
}
# The spec's BatchNorm settings a timm checkpoint needs where they differ from the zoo's:
# timm builds MobileNetV3 with PyTorch's eps 1e-5, the zoo follows torchvision / TensorFlow (1e-3).
TIMM_BN: dict[str, dict[str, float]] = {
    "mbv3_large": {"eps": 1e-5},
    "mbv3_small": {"eps": 1e-5},
    # and EfficientNet-B5-B7 with 1e-5, where torchvision's (and the zoo's) follow TensorFlow's 1e-3
    **{f"efficientnet_b{b}": {"eps": 1e-5} for b in (5, 6, 7)},
}
