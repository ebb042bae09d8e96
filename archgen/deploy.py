"""The inference form of a built model: the same logits, less work per image.

Rewrites, each exact up to float rounding (the tests hold the logits within 1e-4 of the
training form in eval mode):

* BatchNorm folded into the convolution before it: in eval mode BN is a per-channel affine
  map, which the conv's weight and bias absorb (``torch.nn.utils.fusion.fuse_conv_bn_weights``,
  computed in float64 so that the folded float32 weights are as close as they can be). Only a
  conv whose output feeds the BN alone is folded; DenseNet's pre-activation BNs, which follow
  a concatenation, stay as they are.
* eval-mode no-ops removed from the graph (``nn.Identity``, ``nn.Dropout``), and the module
  hierarchy flattened into one FX graph, so that a batch-1 forward makes fewer Python calls;
* weights in channels-last memory format, which oneDNN's CPU convolutions (and cuDNN's)
  run faster, most of all the depthwise ones; the output is the same tensor values.

The result is an ``nn.Module`` (a ``torch.fx.GraphModule``) taking the same input.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .errors import SpecError

_NO_OPS = (nn.Identity, nn.Dropout)


def _fold_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """``conv`` with ``bn`` (eval mode) folded in, the arithmetic done in float64."""
    f64 = {k: v.detach().double() if v is not None else None for k, v in
           (("w", conv.weight), ("b", conv.bias), ("rm", bn.running_mean), ("rv", bn.running_var),
            ("g", bn.weight), ("beta", bn.bias))}
    w, b = fuse_conv_bn_weights(f64["w"], f64["b"], f64["rm"], f64["rv"], bn.eps, f64["g"], f64["beta"])
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, bias=True, padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(w)
        folded.bias.copy_(b)
    return folded


def _rewrite(gm: fx.GraphModule) -> fx.GraphModule:
    """Fold conv -> BN pairs and drop eval-mode no-ops, in place."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        module = modules[node.target]
        if isinstance(module, _NO_OPS):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            continue
        source = node.args[0] if node.args else None
        if (
            isinstance(module, nn.BatchNorm2d)
            and module.track_running_stats
            and isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(modules[source.target], nn.Conv2d)
            and len(source.users) == 1
        ):
            parent, _, attr = source.target.rpartition(".")
            setattr(gm.get_submodule(parent), attr, _fold_conv(modules[source.target], module))
            node.replace_all_uses_with(source)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def deploy(model: nn.Module, *, channels_last: bool = True) -> fx.GraphModule:
    """The inference form of ``model`` (which is left untouched): BN folded, no-ops removed,
    channels-last weights. The result is in eval mode and is meant for inference only.

    Raises:
        SpecError: the model's forward cannot be traced into a static graph.
    """
    model = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(model)
    except (fx.proxy.TraceError, TypeError) as e:  # a user block with data-dependent control flow
        raise SpecError(f"deploy: the model cannot be traced into a static graph ({e})") from None
    gm = _rewrite(gm)
    if channels_last:
        gm = gm.to(memory_format=torch.channels_last)
    for name in ("spec", "feature_info", "num_features"):
        if hasattr(model, name):
            setattr(gm, name, getattr(model, name))
    return gm.eval()
