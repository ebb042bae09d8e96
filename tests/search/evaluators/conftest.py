"""What the evaluators' tests share: a tiny network, digits, and a check that an evaluation
leaves torch's global state as it found it."""

from __future__ import annotations

import pytest
import torch

from search.data import DataSettings, load_data

# two inverted residuals: a few thousand parameters, an epoch on digits in a fraction of a second
TINY = {
    "name": "tiny",
    "num_classes": 10,
    "in_chans": 1,
    "input_size": 32,
    "stem": [{"type": "conv", "c": 8, "k": 3, "s": 2, "nl": "RE"}],
    "body": {
        "type": "bneck",
        "columns": ["k", "exp", "c", "se", "nl", "s"],
        "rows": [[3, 16, 16, False, "RE", 2], [3, 32, 16, False, "HS", 1]],
    },
    "head": [{"type": "global_pool"}, {"type": "linear", "c": "num_classes"}],
}


@pytest.fixture(scope="package")
def digits():
    return load_data(DataSettings())


def torch_state() -> tuple:
    return (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.get_rng_state(),
    )


def assert_same_state(before: tuple) -> None:
    after = torch_state()
    assert after[:2] == before[:2]
    assert torch.equal(after[2], before[2])
