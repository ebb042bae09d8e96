"""Loading a reference implementation's weights (timm / torchvision) into a built model.

The generated module tree registers its tensors in the same order as the reference it
reproduces (conv before bn, blocks in table order, classifier last), so the mapping is by
position, with every shape checked: a spec that is not the same network fails loudly at
the first tensor that differs, naming both keys.

Two differences that are not a different network are bridged:

* a 1x1 convolution loads into a ``Linear`` of the same weight (timm's MobileNetV3
  ``conv_head`` (1280, 960, 1, 1) into archgen's head ``fc`` (1280, 960)): the two compute
  the same on the pooled 1x1 map;
* a BatchNorm eps is not in a state dict, so given the reference module itself, its eps
  values are compared with the generated model's and a difference is refused with the
  knob that fixes it (timm builds MobileNetV3 with PyTorch's 1e-5, torchvision and the
  zoo with TensorFlow's 1e-3: the same weights then give other logits).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .errors import SpecError

_BatchNorm = nn.modules.batchnorm._BatchNorm


def load_reference_weights(
    model: nn.Module,
    reference: nn.Module | Mapping[str, torch.Tensor],
    *,
    check_eps: bool = True,
) -> dict[str, str]:
    """Copy a reference model's tensors into ``model``, tensor by tensor in order.

    Args:
        model: a model built by ``archgen.build`` / ``create_model``.
        reference: the matching reference (torchvision's ``mobilenet_v3_large()``, timm's
            ``create_model("mobilenetv3_large_100")``...) or its state dict (a checkpoint
            file loaded with ``torch.load(path, weights_only=True)``). Only a module carries
            its BatchNorm eps: with a plain state dict no eps check is possible, and a spec
            whose ``bn.eps`` differs from the checkpoint's loads but gives other logits.
        check_eps: with a reference module, refuse BatchNorm eps values that differ from
            the generated model's (set the spec's ``bn.eps``); False loads anyway.

    Returns:
        The mapping used, generated key -> reference key.

    Raises:
        SpecError: the tensor counts differ, a shape does not match (other than a 1x1
            convolution into a Linear), or the BatchNorm eps differs.
    """
    state_dict = reference.state_dict() if isinstance(reference, nn.Module) else reference
    ours = model.state_dict()
    theirs = [(k, v) for k, v in state_dict.items() if isinstance(v, torch.Tensor)]
    if len(ours) != len(theirs):
        raise SpecError(
            f"the reference state dict has {len(theirs)} tensors but the generated model has {len(ours)}: "
            "it is not the network this spec describes"
        )
    mapping, new_state = {}, {}
    for (k_ours, v_ours), (k_ref, v_ref) in zip(ours.items(), theirs):
        if v_ours.shape != v_ref.shape:
            if not _is_pointwise_of(v_ref.shape, v_ours.shape):
                raise SpecError(
                    f"shape mismatch: generated {k_ours} {tuple(v_ours.shape)} vs reference {k_ref} {tuple(v_ref.shape)}"
                )
            v_ref = v_ref.reshape(v_ours.shape)
        mapping[k_ours] = k_ref
        new_state[k_ours] = v_ref
    if check_eps and isinstance(reference, nn.Module):
        _check_eps(model, reference, mapping)
    model.load_state_dict(new_state)
    return mapping


def _is_pointwise_of(ref: torch.Size, ours: torch.Size) -> bool:
    """A 1x1 convolution's weight (out, in, 1, 1) for a Linear's (out, in): the shapes differ
    only by trailing 1s."""
    return len(ref) > len(ours) and ref[: len(ours)] == ours and all(d == 1 for d in ref[len(ours) :])


def _check_eps(model: nn.Module, reference: nn.Module, mapping: Mapping[str, str]) -> None:
    """Pair each generated BatchNorm with the reference module its tensors come from and
    refuse the first pair whose eps differs, naming both and the ``bn.eps`` that fixes it."""
    pairs = []
    for name, bn in model.named_modules():
        if not isinstance(bn, _BatchNorm):
            continue
        key = next((k for k in mapping if k.startswith(f"{name}.")), None)
        if key is None:  # a BatchNorm without parameters or statistics has nothing to load
            continue
        ref_name = mapping[key].rpartition(".")[0]
        try:
            ref_bn = reference.get_submodule(ref_name)
        except AttributeError:  # a state dict key that is no module path (a custom state_dict)
            continue
        if isinstance(ref_bn, _BatchNorm):
            pairs.append((name, bn.eps, ref_name, ref_bn.eps))
    wrong = [p for p in pairs if p[1] != p[3]]
    if not wrong:
        return
    name, eps, ref_name, ref_eps = wrong[0]
    ref_values = {p[3] for p in pairs}
    spec = getattr(model, "spec", None)
    model_name = spec.name if spec is not None else "<name>"
    if len(ref_values) == 1:
        fix = (
            f"set the spec's bn.eps to {ref_eps:g} (python -m archgen model={model_name} model.bn.eps={ref_eps:g}, "
            f"or archgen.load_spec({model_name!r}, bn={{'eps': {ref_eps:g}}})), or pass check_eps=False to load anyway"
        )
    else:
        fix = (
            f"the reference mixes eps values {sorted(ref_values)} and a spec's bn.eps sets one for every BatchNorm; "
            "pass check_eps=False to load anyway"
        )
    raise SpecError(
        f"BatchNorm eps differs: generated {name} has eps {eps:g}, reference {ref_name} has {ref_eps:g} "
        f"({len(wrong)} of {len(pairs)} BatchNorms differ; the same weights give other logits): {fix}"
    )
