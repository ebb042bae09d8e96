"""Datasets of the search's accuracy evaluators, held in memory as tensors, or streamed from disk.

A search trains or scores many architectures on the same data, so each dataset is decoded,
resized and normalised once into ``(N, C, size, size)`` float tensors and cached per
``DataSettings`` for the life of the process. A set whose tensors would not fit
(``data.memory_limit_gb``; ``data.in_memory`` overrides the choice) is streamed instead: each
batch decoded from its files by a ``DataLoader``'s worker processes, in pinned memory when it goes
to a GPU, normalised with the mean and deviation of up to 1,000 of its training images. Splits
are stratified and seeded: the same settings give the same samples.

* ``digits`` (the default): the UCI optical recognition of handwritten digits set as
  scikit-learn ships it (``sklearn.datasets.load_digits``: 1797 8x8 grey images, 10
  classes), so it needs no download and no ``root``;
* ``imagefolder``: ``torchvision.datasets.ImageFolder``'s layout at ``root`` (one folder per class), RGB,
  8- or 16-bit, no link followed out of the root;
* ``cifar10``: torchvision's ``CIFAR10`` at ``root``, downloaded there only with ``download=True``;
* ``fashion_mnist``: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) read from its four IDX files
  at ``root`` (Debian's ``dataset-fashion-mnist`` and Zalando's layout) or at
  ``root/FashionMNIST/raw`` (torchvision's, where ``download=True`` puts them);
* for both, a part of the official test split is the validation set.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from archgen import SpecError
from archgen.checks import check_setting, is_int, is_real
from archgen.limits import MAX_INPUT_SIZE

from .device import owned_cores

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10, VisionDataset

# torchvision is imported where a dataset needs it: importing it imports its models and
# torch._dynamo, about 3 s that every command on digits or Fashion-MNIST's IDX files would pay


@dataclass(frozen=True)
class DataSettings:
    """Which dataset, at which resolution, split how (``data.<field>`` in the search's config)."""

    name: str = "digits"  # one of DATASETS
    root: str | Path | None = None  # the dataset's folder; every dataset but digits needs one
    size: int = 32  # images are resized once, bilinearly, to size x size
    val_fraction: float = 0.25  # share of the samples kept for validation, the same for every dataset
    seed: int = 0  # of the splits and of the ``limit`` subset
    download: bool = False  # cifar10, fashion_mnist: download into root when it is not there
    limit: int | None = 5000  # at most this many training samples (a stratified subset); None: all
    in_memory: bool | None = None  # None: in memory when the decoded images fit memory_limit_gb, else streamed
    memory_limit_gb: float = 4.0  # the most the decoded images of both splits may take in memory
    workers: int | None = None  # DataLoader worker processes of a streamed set; None: min(4, the cores this process owns)

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise SpecError(f"unknown data {self.name!r}; known: {', '.join(sorted(DATASETS))}")
        check_setting("data.size", self.size, is_int(self.size) and 1 <= self.size <= MAX_INPUT_SIZE,
                      f"an integer in [1, {MAX_INPUT_SIZE}]")
        check_setting("data.val_fraction", self.val_fraction, is_real(self.val_fraction) and 0 < self.val_fraction < 1, "a number in (0, 1)")
        check_setting("data.seed", self.seed, is_int(self.seed), "an integer")
        check_setting("data.download", self.download, isinstance(self.download, bool), "true or false")
        check_setting("data.limit", self.limit, self.limit is None or (is_int(self.limit) and self.limit >= 1), "a positive integer or null")
        check_setting("data.in_memory", self.in_memory, self.in_memory is None or isinstance(self.in_memory, bool), "true, false or null")
        check_setting("data.memory_limit_gb", self.memory_limit_gb, is_real(self.memory_limit_gb) and self.memory_limit_gb > 0, "a positive number")
        check_setting("data.workers", self.workers, self.workers is None or (is_int(self.workers) and self.workers >= 0), "an integer >= 0 or null")


@dataclass(frozen=True)
class _Split:
    """A split's labels, and its images decoded on demand, so that only the samples kept are decoded."""

    targets: np.ndarray  # (N,) class indices
    images: Callable[[np.ndarray], torch.Tensor]  # sample indices -> (n, C, size, size) float in [0, 1]


@dataclass(frozen=True)
class _Source:
    train: _Split
    test: _Split | None  # the official test split, where the dataset has one
    num_classes: int


class StreamedImages(torch.utils.data.Dataset):
    """A split's images decoded from disk one by one, resized and normalised as the in-memory ones are."""

    def __init__(self, split: _Split, indices: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.split, self.indices, self.mean, self.std = split, indices, mean[0], std[0]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return (self.split.images(self.indices[i : i + 1])[0] - self.mean) / self.std


Images = torch.Tensor | StreamedImages


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a validation split: normalised float images ``(N, C, size, size)`` (in memory,
    or ``StreamedImages``), int64 labels ``(N,)``. Read the images through ``batches``, which
    serves both forms.

    ``load_data`` hands the same object to every caller with the same settings: treat the
    tensors as read-only.
    """

    name: str
    train_x: Images
    train_y: torch.Tensor
    val_x: Images
    val_y: torch.Tensor
    in_chans: int
    num_classes: int
    size: int
    workers: int = 0  # DataLoader worker processes, for streamed images

    @property
    def streamed(self) -> bool:
        return isinstance(self.train_x, StreamedImages)

    def to(self, device: torch.device) -> Dataset:
        """The same data with its tensors on ``device`` (itself on the CPU), copied once per process;
        streamed images stay on disk and travel batch by batch."""
        return self if device.type == "cpu" else _on_device(self, str(device))

    def batches(self, split: str, indices: Iterable[torch.Tensor], pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) of each batch of sample indices of ``split`` ("train" or "val").

        In memory, a batch is gathered where the tensors are; streamed, a ``DataLoader`` decodes
        the batches ahead in ``workers`` processes (in pinned memory with ``pin``, for an
        asynchronous copy to a GPU), in the order given."""
        x, y = (self.train_x, self.train_y) if split == "train" else (self.val_x, self.val_y)
        if isinstance(x, torch.Tensor):
            for idx in indices:
                idx = idx.to(x.device)
                yield x[idx], y[idx]
            return
        order = [idx.tolist() for idx in indices]
        # a generator of its own: the loader's iterator draws its workers' base seed from it, which
        # from the global one would shift every later dropout mask of the training that reads it
        loader = torch.utils.data.DataLoader(x, batch_sampler=order, num_workers=self.workers, pin_memory=pin,
                                             generator=torch.Generator().manual_seed(0))
        for images, idx in zip(loader, order):
            yield images, y[torch.tensor(idx, device=y.device)]

    def sequential(self, split: str, batch_size: int, full: bool = False) -> list[torch.Tensor]:
        """The indices of ``split`` in order, in batches of ``batch_size`` (only full ones with ``full``)."""
        n = len(self.train_y if split == "train" else self.val_y)
        return list(torch.arange(n // batch_size * batch_size if full else n).split(batch_size))


def labels_digest(data: Dataset) -> str:
    """A fingerprint of what a dataset holds, wherever its files sit: the hash of both splits'
    labels, in order (exact on every machine, unlike the images' floats, whose resizing rounds
    differently on different CPUs)."""
    h = hashlib.sha256()
    for labels in (data.train_y, data.val_y):
        h.update(str(len(labels)).encode())
        h.update(labels.cpu().numpy().astype("<i8").tobytes())
    return h.hexdigest()[:16]


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    # antialias only acts when shrinking, where plain bilinear sampling would alias
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _root(s: DataSettings, *, may_create: bool = False) -> Path:
    if s.root is None:
        raise SpecError(f"data {s.name} needs data.root, the folder that holds it")
    root = Path(s.root).expanduser()
    if not (root.is_dir() or may_create):
        raise SpecError(f"data.root {root}: no such directory")
    return root


def _digits(s: DataSettings) -> _Source:
    digits = load_digits()
    # a pixel is the count of set pixels in a 4x4 block of the 32x32 scan: 0..16
    images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16
    return _Source(_Split(digits.target, lambda i: _resize(images[i], s.size)), None, 10)


def _imagefolder(s: DataSettings) -> _Source:
    root = _root(s)
    classes, samples = _scan_imagefolder(root)
    samples = _drop_unreadable(samples, classes, root)

    def images(indices: np.ndarray) -> torch.Tensor:
        # images differ in size, so each is resized on its own before they are stacked
        return torch.cat([_resize(_pixels(samples[i][0], root), s.size) for i in indices])

    return _Source(_Split(np.asarray([c for _, c in samples]), images), None, len(classes))


def _scan_imagefolder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """torchvision's ``ImageFolder`` layout (one folder per class, image files by extension), read
    without following links out of the root: a linked folder is not entered (a link to ``..`` made
    thousands of mislabelled samples of a dozen files, in both splits), a linked file counts where it
    points inside the root, and each file once."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    real_root = root.resolve()
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    if not classes:
        raise SpecError(f"data.root {root}: no class folder (one folder of images per class)")
    seen: set[Path] = set()
    samples = []
    for label, name in enumerate(classes):
        for folder, subfolders, files in os.walk(root / name):  # followlinks=False: no loop, no way out
            subfolders.sort()
            for file in sorted(files):
                path = Path(folder) / file
                real = path.resolve()
                if not has_file_allowed_extension(file, IMG_EXTENSIONS) or not real.is_file():
                    continue
                if real.is_relative_to(real_root) and real not in seen:
                    seen.add(real)
                    samples.append((str(path), label))
    empty = [name for label, name in enumerate(classes) if all(c != label for _, c in samples)]
    if empty:
        raise SpecError(f"data.root {root}: class folder {empty[0]!r} has no image file "
                        f"(extensions: {', '.join(IMG_EXTENSIONS)})")
    return classes, samples


_NO_RANGE = {"I": "32-bit integer", "F": "32-bit float"}  # PIL modes whose pixels have no fixed range


def _pixels(path: str, root: Path) -> torch.Tensor:
    """One image as (1, 3, H, W) floats in [0, 1]: 8-bit images through PIL's RGB conversion, 16-bit
    greyscale scaled by 65535 (the conversion clips it at 255: a 16-bit PNG came out 99.6 % white)."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16"):
                grey = torch.from_numpy(np.asarray(image).astype(np.float32) / 65535)
                return grey.expand(1, 3, *grey.shape).contiguous()
            if image.mode in _NO_RANGE:
                raise SpecError(f"data.root {root}: {path} is a {_NO_RANGE[image.mode]} image, whose range no file "
                                "states: convert it to 8- or 16-bit")
            return pil_to_tensor(image.convert("RGB"))[None] / 255
    except (OSError, ValueError) as e:  # a file whose header reads but whose pixels do not (a truncated JPEG)
        raise SpecError(f"data.root {root}: cannot decode {path} ({e})") from None


def _drop_unreadable(samples: list[tuple[str, int]], classes: list[str], root: Path) -> list[tuple[str, int]]:
    """The samples that are readable images (PIL's check of the header and, for PNG, of every
    chunk), with one warning that counts the others; a class left with no image is an error, and
    so is an image whose pixels have no fixed range (32-bit integer or float), before any is read."""
    from PIL import Image

    def readable(path: str) -> bool:
        try:
            with Image.open(path) as image:
                mode = image.mode
                image.verify()
        except Exception:  # PIL raises many types for a damaged file: any of them means "skip it"
            return False
        if mode in _NO_RANGE:
            raise SpecError(f"data.root {root}: {os.path.relpath(path, root)} is a {_NO_RANGE[mode]} image, whose "
                            "range no file states: convert it to 8- or 16-bit")
        return True

    keep = [readable(path) for path, _ in samples]
    if all(keep):
        return samples
    skipped = [os.path.relpath(path, root) for (path, _), ok in zip(samples, keep) if not ok]
    kept = [sample for sample, ok in zip(samples, keep) if ok]
    left = {label for _, label in kept}
    empty = [name for i, name in enumerate(classes) if i not in left]
    if empty:
        raise SpecError(f"data.root {root}: class {empty[0]!r} has no readable image ({len(skipped)} unreadable, "
                        f"e.g. {skipped[0]})")
    warnings.warn(f"data.root {root}: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", RuntimeWarning, 4)
    return kept


def _open(cls: type[VisionDataset], s: DataSettings, train: bool) -> VisionDataset:
    root = _root(s, may_create=s.download)
    try:
        return cls(root, train=train, download=s.download)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise SpecError(f"data {s.name}: not found in data.root {root}; set data.download=true or point data.root at the folder that holds it") from err


def _cifar10(s: DataSettings) -> _Source:
    from torchvision.datasets import CIFAR10

    def split(ds: CIFAR10) -> _Split:  # data: (N, 32, 32, 3) uint8 array
        return _Split(np.asarray(ds.targets), lambda i: _resize(torch.from_numpy(ds.data[i]).permute(0, 3, 1, 2) / 255, s.size))

    return _Source(split(_open(CIFAR10, s, train=True)), split(_open(CIFAR10, s, train=False)), 10)


# the names Zalando, Debian and torchvision all give Fashion-MNIST's files, each stored .gz or not
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_FASHION_LAYOUT = (
    f"data.root must hold {', '.join(_FASHION_FILES)} (each .gz or not), "
    "directly (Debian's dataset-fashion-mnist) or under FashionMNIST/raw (torchvision's)"
)
# an IDX magic number is 0x0000TTDD: TT the element type (0x08: uint8), DD the number of dimensions
_IDX_LABELS = 0x00000801
_IDX_IMAGES = 0x00000803


def _fashion_error(where: Path, problem: str) -> SpecError:
    return SpecError(f"data fashion_mnist: {where}: {problem}; {_FASHION_LAYOUT}")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Decode an IDX file, the format of LeCun's MNIST page that Fashion-MNIST kept, as a read-only uint8 array.

    Big-endian: the magic number, one uint32 size per dimension, then the elements in C order.
    """
    ndim = magic & 0xFF
    what = "IDX labels" if ndim == 1 else "IDX images"
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError; EOFError: a cut-off stream
        raise _fashion_error(path, f"cannot read it: {err}") from err
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise _fashion_error(path, f"truncated: {len(raw)} bytes, shorter than the {header}-byte header of {what}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:  # also catches a wrong element type or dimension count, both part of the magic
        raise _fashion_error(path, f"wrong magic number {found:#010x}, expected {magic:#010x} ({what})")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    payload, promised = len(raw) - header, math.prod(shape)
    if payload != promised:
        state = "truncated" if payload < promised else "overlong"
        raise _fashion_error(path, f"{state}: {payload} bytes after the header, which promises {promised} ({'x'.join(map(str, shape))})")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _fashion_mnist_files(root: Path) -> dict[str, Path]:
    """Each of the files found, by name; the uncompressed copy first, as torchvision keeps both and it reads faster."""
    found = {}
    for name in _FASHION_FILES:
        paths = [folder / (name + ext) for folder in (root, root / "FashionMNIST" / "raw") for ext in ("", ".gz")]
        path = next((p for p in paths if p.is_file()), None)
        if path is not None:
            found[name] = path
    return found


def _fashion_mnist(s: DataSettings) -> _Source:
    root = _root(s, may_create=s.download)
    files = _fashion_mnist_files(root)
    if len(files) < len(_FASHION_FILES) and s.download:
        from torchvision.datasets import FashionMNIST

        try:  # fetches all four files into root/FashionMNIST/raw, whichever split it is asked for
            FashionMNIST(root, train=True, download=True)
        except (RuntimeError, OSError) as err:  # RuntimeError: every mirror failed; OSError: root not writable
            raise SpecError(f"data fashion_mnist: download into data.root {root} failed: {err}") from err
        files = _fashion_mnist_files(root)
    missing = [name for name in _FASHION_FILES if name not in files]
    if missing:
        which = "" if len(missing) == len(_FASHION_FILES) else f"{', '.join(missing)} "
        raise SpecError(
            f"data fashion_mnist: {which}not found in {root} or {root / 'FashionMNIST' / 'raw'}; {_FASHION_LAYOUT}; "
            "set data.download=true or point data.root at the folder that holds them"
        )

    def split(part: str) -> _Split:
        images_path, labels_path = files[f"{part}-images-idx3-ubyte"], files[f"{part}-labels-idx1-ubyte"]
        images, labels = _read_idx(images_path, _IDX_IMAGES), _read_idx(labels_path, _IDX_LABELS)
        if images.shape[1:] != (28, 28):
            raise _fashion_error(images_path, f"images of {images.shape[1]}x{images.shape[2]} pixels, expected 28x28")
        if (labels > 9).any():
            first = int(np.argmax(labels > 9))
            raise _fashion_error(labels_path, f"label {labels[first]} at index {first}, expected 0..9")
        if len(labels) != len(images):
            raise _fashion_error(labels_path, f"{len(labels)} labels for the {len(images)} images of {images_path}")
        # indexing copies just the samples kept, so the file's read-only buffer is never written
        return _Split(labels, lambda i: _resize(torch.from_numpy(images[i]).unsqueeze(1) / 255, s.size))

    return _Source(split("train"), split("t10k"), 10)


DATASETS: dict[str, Callable[[DataSettings], _Source]] = {
    "cifar10": _cifar10,
    "digits": _digits,
    "fashion_mnist": _fashion_mnist,
    "imagefolder": _imagefolder,
}


def _stratified(targets: np.ndarray, size: int, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``targets`` split into (the rest, ``size`` of them in the classes' proportions)."""
    everything = np.arange(len(targets))
    if size >= len(targets):
        return everything[:0], everything
    try:
        rest, chosen = train_test_split(everything, test_size=size, stratify=targets, random_state=seed)
    except ValueError as err:  # a class too small to be in both parts
        raise SpecError(f"cannot draw {what} of {size} of {len(targets)} samples in every class's proportion: {err}") from err
    # in file order: decoding reads the files sequentially, and the trainer shuffles anyway
    return np.sort(rest), np.sort(chosen)


@functools.lru_cache(maxsize=4)
def load_data(settings: DataSettings) -> Dataset:
    """Load, split, resize and normalise a dataset; cached per settings within the process."""
    source = DATASETS[settings.name](settings)
    train, val = source.train, source.test or source.train
    seed, fraction = settings.seed, settings.val_fraction
    val_split = f"a validation split (data.val_fraction {fraction})"
    if source.test is None:
        train_idx, val_idx = _stratified(train.targets, round(len(train.targets) * fraction), seed, val_split)
    else:
        train_idx = np.arange(len(train.targets))
    if settings.limit is not None:
        _, keep = _stratified(train.targets[train_idx], settings.limit, seed, f"a training subset (data.limit {settings.limit})")
        train_idx = train_idx[keep]
    if source.test is not None:
        # as many validation samples as val_fraction sets aside where there is no test split,
        # so that the proportions, and the time a validation takes, are alike across datasets
        _, val_idx = _stratified(val.targets, round(len(train_idx) * fraction / (1 - fraction)), seed, val_split)
    channels = train.images(train_idx[:1]).shape[1]
    gigabytes = (len(train_idx) + len(val_idx)) * channels * settings.size**2 * 4 / 2**30
    in_memory = gigabytes <= settings.memory_limit_gb if settings.in_memory is None else settings.in_memory
    if in_memory:
        train_x, val_x = train.images(train_idx), val.images(val_idx)
        sample = train_x
    else:  # the normalisation of up to 1,000 training images, drawn with the splits' seed
        few = np.sort(np.random.default_rng(seed).permutation(len(train_idx))[:1000])
        sample = train.images(train_idx[few])
    mean = sample.mean(dim=(0, 2, 3), keepdim=True)
    # a constant channel has std 0 and is all 0 once centred: keep it 0 rather than 0 / 0
    std = sample.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    if in_memory:
        train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    else:
        train_x, val_x = StreamedImages(train, train_idx, mean, std), StreamedImages(val, val_idx, mean, std)
    workers = min(4, owned_cores()) if settings.workers is None else settings.workers
    return Dataset(
        name=settings.name,
        train_x=train_x,
        train_y=torch.from_numpy(train.targets[train_idx]).long(),
        val_x=val_x,
        val_y=torch.from_numpy(val.targets[val_idx]).long(),
        in_chans=channels,
        num_classes=source.num_classes,
        size=settings.size,
        workers=0 if in_memory else workers,
    )


@functools.lru_cache(maxsize=2)
def _on_device(data: Dataset, device: str) -> Dataset:
    # a set held in memory fits a GPU's memory too (memory_limit_gb), and there every batch is
    # gathered without a host-to-device copy; streamed images stay where they are
    keys = ("train_y", "val_y") if data.streamed else ("train_x", "train_y", "val_x", "val_y")
    return replace(data, **{k: getattr(data, k).to(device) for k in keys})
