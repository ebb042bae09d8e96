"""``search.evaluators.train.augment``: a random crop of the zero-padded image and a left-right flip (the
CIFAR recipe of He et al. 2016, Sec. 4.2), seeded; and ``train.augment`` in a training."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import archgen
from archgen.space import Space
from search.data import DataSettings, load_data
from search.evaluators.train import TrainSettings, augment, train

from .conftest import SPACE


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _window(padded: torch.Tensor, dy: int, dx: int, flip: bool, h: int, w: int) -> torch.Tensor:
    crop = padded[:, dy:dy + h, dx:dx + w]
    return crop.flip(2) if flip else crop


def _windows(x: torch.Tensor) -> list[tuple[int, int, bool]]:
    """For each image of ``augment(x)``'s input ``x``: every (dy, dx, flipped) whose window of the
    zero-padded image it could be, found by trying them all."""
    _, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    out = augment(x, _generator(0))
    found = []
    for image, source in zip(out, padded):
        matches = [(dy, dx, flip) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for flip in (False, True)
                   if torch.equal(image, _window(source, dy, dx, flip, h, w))]
        assert len(matches) == 1, f"{matches} of an image of random values"
        found.append(matches[0])
    return found


def test_the_output_has_the_inputs_shape_and_leaves_it_alone():
    x = torch.randn(5, 3, 16, 12)
    before = x.clone()
    out = augment(x, _generator(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    x = torch.randn(32, 1, 16, 16)
    assert torch.equal(augment(x, _generator(3)), augment(x, _generator(3)))
    assert not torch.equal(augment(x, _generator(3)), augment(x, _generator(4)))


@pytest.mark.parametrize("shape", [(6, 2, 16, 12), (6, 1, 4, 4), (6, 3, 9, 20)],
                         ids=["pad 2, taller", "pad 1 (h // 8 is 0)", "pad 1, wider"])
def test_every_image_is_a_possibly_flipped_window_of_its_zero_padded_self(shape):
    x = torch.randn(*shape)
    assert len(_windows(x)) == shape[0]


def test_over_many_images_every_offset_and_both_flips_occur():
    h = 16  # pad 2: 5 x 5 offsets
    found = _windows(torch.randn(400, 1, h, h))
    assert {(dy, dx) for dy, dx, _ in found} == {(dy, dx) for dy in range(5) for dx in range(5)}
    flips = sum(flip for _, _, flip in found)
    assert 150 < flips < 250  # about half of 400


@pytest.mark.parametrize("value", ["yes", 1])
def test_augment_must_be_a_bool(value):
    with pytest.raises(archgen.SpecError, match=f"^{re.escape(f'train.augment must be true or false, got {value!r}')}$"):
        TrainSettings(augment=value)


@pytest.fixture(scope="module")
def digits():
    return load_data(DataSettings(limit=200))


@pytest.fixture(scope="module")
def spec():
    return Space(SPACE, num_classes=10, in_chans=1, input_size=32).random(random.Random(0)).spec


def test_training_with_augmentation_differs_from_without_and_repeats_for_its_seed(digits, spec):
    images = digits.train_x.clone()
    plain = TrainSettings(epochs=1, batch_size=32, seed=2)
    augmented = replace(plain, augment=True)
    first, again = train(spec, digits, augmented), train(spec, digits, augmented)
    without = train(spec, digits, plain)
    assert (first.accuracy, first.loss) == (again.accuracy, again.loss)
    assert first.loss != without.loss
    assert torch.equal(digits.train_x, images)  # the shared dataset is not augmented in place
