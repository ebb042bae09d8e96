"""Activation functions by the names specs use (MobileNetV3's NL column: RE, HS)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..registry import Registry

ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")

ACTIVATIONS.register("relu", lambda: nn.ReLU(inplace=True), aliases=("RE",))
ACTIVATIONS.register("relu6", lambda: nn.ReLU6(inplace=True), aliases=("RE6",))
ACTIVATIONS.register("hswish", lambda: nn.Hardswish(inplace=True), aliases=("HS", "hard_swish"))
ACTIVATIONS.register("hsigmoid", lambda: nn.Hardsigmoid(inplace=True), aliases=("hard_sigmoid",))
ACTIVATIONS.register("sigmoid", nn.Sigmoid)
ACTIVATIONS.register("silu", lambda: nn.SiLU(inplace=True), aliases=("swish",))
ACTIVATIONS.register("gelu", nn.GELU)
ACTIVATIONS.register("tanh", nn.Tanh)


def make_act(name: str | None) -> nn.Module:
    """A fresh activation module; ``None`` gives ``nn.Identity``."""
    return nn.Identity() if name is None else ACTIVATIONS.get(name)()
