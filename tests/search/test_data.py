"""The search's datasets: shapes, seeded stratified splits, normalisation, the cache, and bad settings."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import archgen
from search.data import DATASETS, DataSettings, load_data

N_DIGITS = 1797  # sklearn's load_digits


def _class_counts(y: torch.Tensor) -> list[int]:
    return torch.bincount(y, minlength=10).tolist()


def test_digits_shapes_split_sizes_and_normalisation():
    data = load_data(DataSettings())
    assert (data.name, data.in_chans, data.num_classes, data.size) == ("digits", 1, 10, 32)
    assert data.train_x.shape == (N_DIGITS - 449, 1, 32, 32)  # round(1797 * 0.25) = 449 for validation
    assert data.val_x.shape == (449, 1, 32, 32)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert len(data.train_y) == len(data.train_x) and len(data.val_y) == len(data.val_x)
    # normalised with the training split's own statistics
    assert abs(data.train_x.mean().item()) < 1e-4 and abs(data.train_x.std().item() - 1) < 1e-3
    assert set(data.train_y.unique().tolist()) == set(range(10))
    small = load_data(DataSettings(size=16))
    assert small.train_x.shape[1:] == (1, 16, 16) and small.size == 16


def test_digits_split_is_stratified():
    data = load_data(DataSettings(val_fraction=0.4))
    everything = np.add(_class_counts(data.train_y), _class_counts(data.val_y))
    assert everything.sum() == N_DIGITS
    # every class is split 60/40 up to rounding
    assert np.abs(np.array(_class_counts(data.val_y)) - 0.4 * everything).max() <= 1


def test_limit_takes_a_stratified_training_subset_and_leaves_validation_alone():
    full, limited = load_data(DataSettings()), load_data(DataSettings(limit=200))
    assert len(limited.train_y) == 200
    assert all(19 <= c <= 21 for c in _class_counts(limited.train_y))
    assert torch.equal(limited.val_y, full.val_y)


def test_same_settings_same_data_other_seed_other_split():
    a = load_data.__wrapped__(DataSettings(seed=3))  # past the cache: a second load from scratch
    b = load_data.__wrapped__(DataSettings(seed=3))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    other = load_data(DataSettings(seed=4))
    assert not torch.equal(a.val_x, other.val_x)


def test_loads_are_cached_per_settings():
    assert load_data(DataSettings(size=24)) is load_data(DataSettings(size=24))
    assert load_data(DataSettings(size=24)) is not load_data(DataSettings(size=24, seed=1))


def _write_imagefolder(root, classes=("cat", "dog", "owl"), per_class=8):
    """Each class has its own colour channel: class i is bright in channel i, so labels can be checked."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            h, w = 20 + j, 28 - j  # sizes differ: the loader resizes each image
            pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            pixels[..., i] += 180
            Image.fromarray(pixels).save(root / name / f"{j}.png")


def test_imagefolder_from_pngs(tmp_path):
    _write_imagefolder(tmp_path)
    data = load_data(DataSettings(name="imagefolder", root=str(tmp_path), size=16))
    assert (data.in_chans, data.num_classes) == (3, 3)
    assert data.train_x.shape == (18, 3, 16, 16) and data.val_x.shape == (6, 3, 16, 16)
    assert torch.bincount(data.val_y).tolist() == [2, 2, 2]
    # folders sort into class indices: cat 0 (red), dog 1 (green), owl 2 (blue)
    for x, y in ((data.train_x, data.train_y), (data.val_x, data.val_y)):
        assert torch.equal(x.mean(dim=(2, 3)).argmax(dim=1), y)


def test_unknown_data_name_lists_the_known_ones():
    with pytest.raises(archgen.SpecError, match=r"^unknown data 'mnist9'; known: cifar10, digits, fashion_mnist, imagefolder$"):
        DataSettings(name="mnist9")
    assert sorted(DATASETS) == ["cifar10", "digits", "fashion_mnist", "imagefolder"]


@pytest.mark.parametrize("name", ["imagefolder", "cifar10", "fashion_mnist"])
def test_missing_root_is_refused_naming_data_root(name, tmp_path):
    with pytest.raises(archgen.SpecError, match=rf"data {name} needs data.root"):
        load_data(DataSettings(name=name))
    missing = tmp_path / "nowhere"
    with pytest.raises(archgen.SpecError, match=rf"data.root {re.escape(str(missing))}: no such directory"):
        load_data(DataSettings(name=name, root=str(missing)))


@pytest.mark.parametrize("name", ["cifar10", "fashion_mnist"])
def test_absent_dataset_without_download_says_how_to_get_it(name, tmp_path):
    with pytest.raises(archgen.SpecError, match=rf"data {name}: not found in data.root {re.escape(str(tmp_path))}; set data.download=true"):
        load_data(DataSettings(name=name, root=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []  # nothing downloaded


def test_imagefolder_without_class_folders_is_a_spec_error(tmp_path):
    with pytest.raises(archgen.SpecError, match=rf"data.root {re.escape(str(tmp_path))}: .*class folder"):
        load_data(DataSettings(name="imagefolder", root=str(tmp_path)))


def test_a_class_too_small_to_split_is_a_spec_error(tmp_path):
    _write_imagefolder(tmp_path, per_class=1)
    with pytest.raises(archgen.SpecError, match=r"cannot draw a validation split \(data.val_fraction 0.25\)"):
        load_data(DataSettings(name="imagefolder", root=str(tmp_path)))


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("size", 0, "a positive integer"),
        ("val_fraction", 1.0, r"a number in \(0, 1\)"),
        ("limit", 0, "a positive integer or null"),
        ("download", "yes", "true or false"),
    ],
)
def test_bad_settings_name_the_setting(field, value, expected):
    with pytest.raises(archgen.SpecError, match=rf"^data.{field} must be {expected}, got {value!r}$"):
        DataSettings(**{field: value})
