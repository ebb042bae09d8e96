"""Loading a reference implementation's weights (timm / torchvision) into a built model.

The generated module tree registers its tensors in the same order as the reference it
reproduces (conv before bn, blocks in table order, classifier last), so the mapping is by
position, with every shape checked: a spec that is not the same network fails loudly at
the first tensor that differs, naming both keys.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .errors import SpecError


def load_reference_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Copy a reference model's ``state_dict`` into ``model``, tensor by tensor in order.

    Args:
        model: a model built by ``archgen.build`` / ``create_model``.
        state_dict: the matching reference's state dict (e.g. torchvision's
            ``mobilenet_v3_large().state_dict()`` or a checkpoint file loaded with
            ``torch.load(path, weights_only=True)``).

    Returns:
        The mapping used, generated key -> reference key.

    Raises:
        SpecError: the tensor counts differ or a shape does not match.
    """
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
            raise SpecError(
                f"shape mismatch: generated {k_ours} {tuple(v_ours.shape)} vs reference {k_ref} {tuple(v_ref.shape)}"
            )
        mapping[k_ours] = k_ref
        new_state[k_ours] = v_ref
    model.load_state_dict(new_state)
    return mapping
