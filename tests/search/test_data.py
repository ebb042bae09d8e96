"""The search's datasets: shapes, seeded stratified splits, normalisation, the cache, and bad settings."""

from __future__ import annotations

import gzip
import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import archgen
from search.data import DATASETS, DataSettings, load_data
from search.evaluators.train import TrainSettings, train

N_DIGITS = 1797  # sklearn's load_digits
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# the end of every fashion_mnist error, as a pattern: where the files must be
FASHION_LAYOUT = re.escape(
    f"data.root must hold {', '.join(FASHION_FILES)} (each .gz or not), "
    "directly (Debian's dataset-fashion-mnist) or under FashionMNIST/raw (torchvision's)"
)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # where `apt-get install dataset-fashion-mnist` puts it


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


def test_a_16_bit_png_is_scaled_by_its_depth_where_it_was_silently_clipped_white(tmp_path):
    for name, lo in (("dark", 0), ("light", 20000)):
        (tmp_path / name).mkdir()
        for j in range(4):  # greyscale ramps over the 16-bit range: as 8 bits, all but the first 0.4 % clip to 255
            ramp = np.linspace(lo, lo + 40000 + 1000 * j, 24 * 24).reshape(24, 24).astype(np.uint16)
            Image.fromarray(ramp).save(tmp_path / name / f"{j}.png")
    assert Image.open(tmp_path / "dark" / "0.png").mode == "I;16"
    data = load_data(DataSettings(name="imagefolder", root=str(tmp_path), size=24))
    x = torch.cat([data.train_x, data.val_x])
    assert (x == x.max()).float().mean() < 0.01  # a ramp, not a white page
    # the channels are one grey, and the light class is brighter than the dark one by its offset
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    y = torch.cat([data.train_y, data.val_y])
    assert x[y == 1].mean() > x[y == 0].mean()


@pytest.mark.parametrize("array, mode", [(np.linspace(0, 1000, 64, dtype=np.float32), "32-bit float"),
                                         (np.arange(64, dtype=np.int32) * 70000, "32-bit integer")])
def test_an_image_without_a_fixed_range_is_refused_in_one_line_not_clipped(tmp_path, array, mode):
    _write_imagefolder(tmp_path, classes=("cat", "dog"), per_class=4)
    Image.fromarray(array.reshape(8, 8)).save(tmp_path / "dog" / "odd.tiff")
    with pytest.raises(archgen.SpecError, match=rf"dog/odd.tiff is a {mode} image, whose range no file states"):
        load_data(DataSettings(name="imagefolder", root=str(tmp_path), size=8))


def test_links_in_an_imagefolder_are_not_followed_out_of_it_and_count_each_file_once(tmp_path):
    """A link to .. inside a class folder made 5,412 samples of 12 files, most of them mislabelled."""
    root = tmp_path / "data"
    _write_imagefolder(root, classes=("cat", "dog"), per_class=6)
    (root / "cat" / "up").symlink_to("..", target_is_directory=True)  # a loop
    (root / "dog" / "again.png").symlink_to(root / "cat" / "0.png")  # a file already counted under cat
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(outside)
    (root / "dog" / "out.png").symlink_to(outside)
    data = load_data(DataSettings(name="imagefolder", root=str(root), size=16))
    y = torch.cat([data.train_y, data.val_y])
    assert torch.bincount(y).tolist() == [6, 6]
    x = torch.cat([data.train_x, data.val_x])
    assert torch.equal(x.mean(dim=(2, 3)).argmax(dim=1), y)  # every label is its folder's


def test_unreadable_images_are_skipped_with_one_warning_that_counts_them(tmp_path):
    _write_imagefolder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG header, then noise
    (tmp_path / "owl" / "empty.jpg").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match=r"skipped 2 unreadable image\(s\), e\.g\. dog/broken\.png") as caught:
        data = load_data(DataSettings(name="imagefolder", root=str(tmp_path), size=16, seed=7))
    assert len(caught) == 1
    assert len(data.train_y) + len(data.val_y) == 24  # the 24 good images, every class kept
    assert torch.bincount(torch.cat([data.train_y, data.val_y])).tolist() == [8, 8, 8]


def test_an_image_whose_pixels_cannot_be_decoded_is_one_line_naming_it(tmp_path):
    _write_imagefolder(tmp_path)
    jpeg = tmp_path / "cat" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # the header reads, the pixels stop half-way
    with pytest.raises(archgen.SpecError, match=rf"^data.root {tmp_path}: cannot decode {jpeg} \("):
        load_data(DataSettings(name="imagefolder", root=str(tmp_path), size=16, seed=9))


def test_a_class_with_no_readable_image_is_a_spec_error(tmp_path):
    _write_imagefolder(tmp_path, classes=("cat", "dog"))
    (tmp_path / "owl").mkdir()
    (tmp_path / "owl" / "0.png").write_bytes(b"not an image")
    with pytest.raises(archgen.SpecError, match=r"class 'owl' has no readable image \(1 unreadable, e\.g\. owl/0\.png\)"):
        load_data(DataSettings(name="imagefolder", root=str(tmp_path), size=16, seed=8))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_set_too_large_for_memory_is_streamed_and_gives_the_same_batches_and_training(tmp_path, workers):
    _write_imagefolder(tmp_path)
    settings = DataSettings(name="imagefolder", root=str(tmp_path), size=16, workers=workers)
    held = load_data(settings)
    # 24 images of 3x16x16 floats are 74 kB: a limit below that streams them, as does in_memory=false
    streamed = load_data(replace(settings, memory_limit_gb=50e3 / 2**30))
    assert not held.streamed and streamed.streamed and load_data(replace(settings, in_memory=False)).streamed
    assert streamed.workers == workers and len(streamed.train_x) == len(held.train_y) == 18
    # fewer than 1,000 training images: the streamed normalisation is the in-memory one, exactly
    order = [torch.tensor([5, 0, 17]), torch.tensor([3, 9])]
    for (a, ya), (b, yb) in zip(held.batches("train", order), streamed.batches("train", order)):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    val = [(x, y) for x, y in streamed.batches("val", streamed.sequential("val", 4))]
    assert [len(y) for _, y in val] == [4, 2] and torch.equal(torch.cat([x for x, _ in val]), held.val_x)
    spec = archgen.load_spec("mbv3_small", num_classes=3, in_chans=3, input_size=(16, 16))
    settings = TrainSettings(epochs=1, batch_size=4, threads=1, augment=True)
    assert train(spec, streamed, settings).accuracies == train(spec, held, settings).accuracies


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


@pytest.mark.parametrize(
    "name, where",
    [
        ("cifar10", "not found in data.root {root}"),
        ("fashion_mnist", "not found in {root} or {root}/FashionMNIST/raw; " + FASHION_LAYOUT),
    ],
)
def test_absent_dataset_without_download_says_how_to_get_it(name, where, tmp_path):
    where = where.format(root=re.escape(str(tmp_path)))
    with pytest.raises(archgen.SpecError, match=rf"^data {name}: {where}; set data.download=true or point data.root at the folder that holds (it|them)$"):
        load_data(DataSettings(name=name, root=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []  # nothing downloaded


def _idx(magic: int, array: np.ndarray) -> bytes:
    """An IDX file: big-endian magic and sizes, then the uint8 elements."""
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _fashion_idx(n_train: int = 40, n_test: int = 30) -> dict[str, bytes]:
    """The four files, uncompressed. Class c is grey level 10 + 20c, but for its 8 bottom rows, which mark the split: 0 train, 255 test."""
    files = {}
    for part, n, mark in (("train", n_train, 0), ("t10k", n_test, 255)):
        labels = np.arange(n) % 10
        images = np.repeat((10 + 20 * labels)[:, None, None], 28, axis=1).repeat(28, axis=2)
        images[:, 20:] = mark
        files[f"{part}-images-idx3-ubyte"] = _idx(0x803, images)
        files[f"{part}-labels-idx1-ubyte"] = _idx(0x801, labels)
    return files


def _write_fashion_mnist(root: Path, folder: str = "", gz: bool = True) -> dict[str, Path]:
    """Write the four files into root/folder, gzipped or not; Debian's layout by default."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in _fashion_idx().items():
        paths[name] = root / folder / (name + (".gz" if gz else ""))
        paths[name].write_bytes(gzip.compress(content) if gz else content)
    return paths


def _fashion_mnist_settings(root: Path) -> DataSettings:
    return DataSettings(name="fashion_mnist", root=str(root), size=16, limit=None)


def test_fashion_mnist_from_idx_files_in_debian_and_torchvision_layouts(tmp_path):
    layouts = {  # folder under data.root, gzipped
        "debian": ("", True),
        "torchvision": ("FashionMNIST/raw", False),
        "uncompressed in root": ("", False),
        "gzipped under FashionMNIST/raw": ("FashionMNIST/raw", True),
    }
    loaded = {}
    for layout, (folder, gz) in layouts.items():
        _write_fashion_mnist(tmp_path / layout, folder, gz)
        loaded[layout] = load_data(_fashion_mnist_settings(tmp_path / layout))
    data = loaded["debian"]
    assert (data.name, data.in_chans, data.num_classes, data.size) == ("fashion_mnist", 1, 10, 16)
    # every training image; round(40 * 0.25 / 0.75) = 13 of the 30 test images validate
    assert data.train_x.shape == (40, 1, 16, 16) and data.val_x.shape == (13, 1, 16, 16)
    assert _class_counts(data.train_y) == [4] * 10
    # the top-left pixel is the class's grey level: one value per class in both splits, rising with the class
    level, label = torch.cat([data.train_x, data.val_x])[:, 0, 0, 0], torch.cat([data.train_y, data.val_y])
    per_class = [level[label == c].unique() for c in range(10)]
    assert all(len(values) == 1 for values in per_class) and (torch.cat(per_class).diff() > 0).all()
    # the bottom-right pixel marks the split: validation comes from the test files
    assert data.train_x[:, 0, -1, -1].unique().numel() == 1
    assert data.val_x[:, 0, -1, -1].min() > data.train_x[:, 0, -1, -1].max()
    for other in loaded.values():
        for field in ("train_x", "train_y", "val_x", "val_y"):
            assert torch.equal(getattr(other, field), getattr(data, field))


def test_missing_fashion_mnist_file_is_named_with_the_folders_searched(tmp_path):
    _write_fashion_mnist(tmp_path, "FashionMNIST/raw", gz=False)["t10k-labels-idx1-ubyte"].unlink()
    root = re.escape(str(tmp_path))
    with pytest.raises(
        archgen.SpecError,
        match=rf"^data fashion_mnist: t10k-labels-idx1-ubyte not found in {root} or {root}/FashionMNIST/raw; {FASHION_LAYOUT}; "
        "set data.download=true or point data.root at the folder that holds them$",
    ):
        load_data(_fashion_mnist_settings(tmp_path))


def test_fashion_mnist_download_asks_torchvision_only_when_the_files_are_missing(tmp_path, monkeypatch):
    calls = []

    def fake_torchvision(root, train, download):  # writes what torchvision's download leaves: uncompressed files in FashionMNIST/raw
        calls.append((root, train, download))
        _write_fashion_mnist(root, "FashionMNIST/raw", gz=False)

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", fake_torchvision)
    settings = DataSettings(name="fashion_mnist", root=str(tmp_path / "new"), size=16, limit=None, download=True)
    assert load_data(settings).train_x.shape == (40, 1, 16, 16)
    assert calls == [(tmp_path / "new", True, True)]
    load_data.__wrapped__(settings)  # past the cache: the files are there now, so no second download
    assert len(calls) == 1


def test_failed_fashion_mnist_download_is_one_line(tmp_path, monkeypatch):
    def offline(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", offline)
    with pytest.raises(
        archgen.SpecError,
        match=rf"^data fashion_mnist: download into data.root {re.escape(str(tmp_path))} failed: Error downloading train-images-idx3-ubyte.gz$",
    ):
        load_data(DataSettings(name="fashion_mnist", root=str(tmp_path), download=True))


def _labels_with(label: int, at: int) -> bytes:
    labels = np.arange(40) % 10
    labels[at] = label
    return _idx(0x801, labels)


@pytest.mark.parametrize(
    "gz, name, damage, problem",
    [
        (False, "train-images-idx3-ubyte", lambda b: b[:-5], r"truncated: 31355 bytes after the header, which promises 31360 \(40x28x28\)"),
        (False, "train-images-idx3-ubyte", lambda b: b + b"\0", r"overlong: 31361 bytes after the header, which promises 31360 \(40x28x28\)"),
        (False, "t10k-images-idx3-ubyte", lambda b: b[:10], "truncated: 10 bytes, shorter than the 16-byte header of IDX images"),
        (False, "train-images-idx3-ubyte", lambda b: _labels_with(0, at=0), r"wrong magic number 0x00000801, expected 0x00000803 \(IDX images\)"),
        (False, "train-labels-idx1-ubyte", lambda b: _labels_with(10, at=7), r"label 10 at index 7, expected 0\.\.9"),
        (False, "train-labels-idx1-ubyte", lambda b: _idx(0x801, np.arange(39) % 10), "39 labels for the 40 images of {images}"),
        (False, "train-images-idx3-ubyte", lambda b: _idx(0x803, np.zeros((40, 32, 32))), "images of 32x32 pixels, expected 28x28"),
        (True, "train-labels-idx1-ubyte", lambda b: b"not gzip", r"cannot read it: Not a gzipped file \(b'no'\)"),
        (True, "t10k-images-idx3-ubyte", lambda b: b[: len(b) // 2], "cannot read it: Compressed file ended before the end-of-stream marker was reached"),
    ],
)
def test_damaged_fashion_mnist_file_is_one_line_naming_it(gz, name, damage, problem, tmp_path):
    paths = _write_fashion_mnist(tmp_path, "" if gz else "FashionMNIST/raw", gz)
    paths[name].write_bytes(damage(paths[name].read_bytes()))
    problem = problem.format(images=re.escape(str(paths["train-images-idx3-ubyte"])))
    with pytest.raises(archgen.SpecError, match=rf"^data fashion_mnist: {re.escape(str(paths[name]))}: {problem}; {FASHION_LAYOUT}$"):
        load_data(_fashion_mnist_settings(tmp_path))


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason=f"no {DEBIAN_FASHION_MNIST}: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_without_limit_trains_on_all_60000_images():
    # past the cache: the 300 MB of tensors go when the test ends
    data = load_data.__wrapped__(DataSettings(name="fashion_mnist", root=str(DEBIAN_FASHION_MNIST), size=28, limit=None))
    assert data.train_x.shape == (60000, 1, 28, 28) and _class_counts(data.train_y) == [6000] * 10
    # round(60000 * 0.25 / 0.75) = 20000 validation samples wanted, more than the test split has: all 10,000 of it
    assert data.val_x.shape == (10000, 1, 28, 28) and _class_counts(data.val_y) == [1000] * 10


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
        ("size", 0, r"an integer in \[1, 8192\]"),
        ("size", 30000, r"an integer in \[1, 8192\]"),
        ("val_fraction", 1.0, r"a number in \(0, 1\)"),
        ("limit", 0, "a positive integer or null"),
        ("download", "yes", "true or false"),
        ("in_memory", "auto", "true, false or null"),
        ("memory_limit_gb", 0, "a positive number"),
        ("workers", -1, "an integer >= 0 or null"),
    ],
)
def test_bad_settings_name_the_setting(field, value, expected):
    with pytest.raises(archgen.SpecError, match=rf"^data.{field} must be {expected}, got {value!r}$"):
        DataSettings(**{field: value})
