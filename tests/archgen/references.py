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
}

# Models whose reference weights load into the generated model and give the same logits.
PORTED = ["mbv1", "mbv2", "mbv3_large", "mbv3_small", "resnet18", "vovnet39", "ese_vovnet39b"]
