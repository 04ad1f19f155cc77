"""From a folder of images to DataLoaders: indexing, the Dataset, a leak-free split (lesson 03).

Both datasets of the course use torchvision's ImageFolder layout, one folder per class, sorted
names = labels::

    root/fake_images/*.png    label 0
    root/real_images/*.png    label 1

:func:`find_images` indexes a folder once and skips undecodable files with one warning;
:func:`stratified_split` draws a seeded train/val/test split that keeps each class's share in every
split and never drops an image; :func:`create_dataloaders` does both and wraps each split in a
DataLoader; :func:`first_per_class` takes a smaller, still balanced, part of a split.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from helpers.images import ImageLoadError, list_image_files, load_image_rgb

CLASS_NAMES = ("fake_images", "real_images")  # sorted, as ImageFolder orders them: fake = 0, real = 1
LAYOUT_HELP = "root/fake_images/*.png and root/real_images/*.png (one sub-folder per class)"

Sample = TypeVar("Sample", bound=tuple)


def _layout_error(root: Path, problem: str) -> ValueError:
    return ValueError(
        f"{root}: {problem}. Expected an image folder with at least two classes: {LAYOUT_HELP}. "
        "Make the toy set with `python -m helpers.data make-toy --out data/toy` or fetch the real one "
        "with `python -m helpers.data download --out data/fake_or_real`."
    )


def _decode_problem(path: Path) -> str | None:
    """None if ``path`` decodes (JPEGs at about 1/8 scale: all compressed data is still read),
    else why not."""
    try:
        load_image_rgb(path, draft_size=64)
    except ImageLoadError as error:
        return str(error)
    return None


def find_images(root: str | os.PathLike, *, check: bool = True) -> tuple[list[tuple[Path, int]], list[str]]:
    """Index an ImageFolder tree once: ``([(path, label), ...], class_names)`` (lesson 03).

    Class names are the sub-folders of ``root`` in sorted order (``fake_images`` = 0, ``real_images``
    = 1). Files without an image extension are ignored. With ``check=True`` every image is decoded
    once (JPEGs at 1/8 scale, which still reads all of the compressed data), so empty, truncated,
    corrupt or oversized files are found now rather than in the middle of an epoch; they are
    skipped with ONE warning that names them.

    Raises:
        ValueError: ``root`` is missing, or has fewer than two class folders with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise _layout_error(root, "folder not found" if not root.exists() else "is not a folder")
    class_dirs = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX"
    )
    files_per_class = {d.name: list_image_files(d) for d in class_dirs}
    class_names = list(files_per_class)
    if len(class_names) < 2 or not all(files_per_class.values()):
        found = ", ".join(f"{n}/ ({len(f)} images)" for n, f in files_per_class.items()) or "no sub-folders"
        raise _layout_error(root, f"found {found}")

    candidates = [(path, label) for label, name in enumerate(class_names) for path in files_per_class[name]]
    problems: list[str | None] = [None] * len(candidates)
    if check:
        # PIL decodes without holding the GIL, so threads are enough.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            problems = list(pool.map(_decode_problem, [path for path, _ in candidates]))
    samples = [sample for sample, problem in zip(candidates, problems, strict=True) if problem is None]
    skipped = [problem for problem in problems if problem is not None]
    if skipped:
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        shown = "\n  ".join(skipped[:20]) + more
        warnings.warn(f"Skipped {len(skipped)} undecodable file(s) under {root}:\n  {shown}", stacklevel=2)
    if len({label for _, label in samples}) < 2:
        raise _layout_error(root, "fewer than two classes have a decodable image")
    return samples, class_names


class ImageFolderDataset(Dataset):
    """``(image tensor, label)`` pairs from a list of ``(path, label)`` samples (see :func:`find_images`).

    Images are decoded with :func:`helpers.images.load_image_rgb`, then passed through ``transform``.
    Lessons 03 to 06.
    """

    def __init__(self, samples: Sequence[tuple[str | os.PathLike, int]], transform: Callable | None = None):
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.targets = [label for _, label in self.samples]  # as in torchvision's ImageFolder
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = load_image_rgb(path)
        if self.transform is not None:
            image = self.transform(image)  # (3, H, W) tensor for the course's transforms
        return image, label


def first_per_class(samples: Sequence[Sample], per_class: int) -> list[Sample]:
    """The first ``per_class`` of each label among ``samples`` (``(..., label)`` tuples), in their
    order; ``per_class=0`` keeps them all. Lessons 04 and 05 use it to evaluate on a smaller part
    of a split: the split was drawn at random, so its first images of a class are a random sample."""
    seen: Counter = Counter()
    kept = []
    for sample in samples:
        label = sample[-1]
        if per_class == 0 or seen[label] < per_class:
            kept.append(sample)
            seen[label] += 1
    return kept


def stratified_split(
    targets: Sequence[int], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42
) -> tuple[list[int], list[int], list[int]]:
    """Split indices into train/val/test so that every split keeps the class proportions (lesson 03).

    For each class with n images, ``round(n * fraction)`` go to val and to test (at least one when the
    fraction is above zero), the rest to train. The same ``seed`` gives the same split.
    Returns three sorted, disjoint lists of indices that together cover ``range(len(targets))``.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 to leave training images, got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction}"
        )
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for label in np.unique(targets):
        indices = rng.permutation(np.flatnonzero(targets == label))
        n = len(indices)
        n_val = max(round(n * val_fraction), 1) if val_fraction > 0 else 0
        n_test = max(round(n * test_fraction), 1) if test_fraction > 0 else 0
        if n - n_val - n_test < 1:
            raise ValueError(
                f"class {label} has only {n} image(s): too few for val_fraction={val_fraction} and "
                f"test_fraction={test_fraction} plus at least one training image"
            )
        val += indices[:n_val].tolist()
        test += indices[n_val : n_val + n_test].tolist()
        train += indices[n_val + n_test :].tolist()
    return sorted(train), sorted(val), sorted(test)


def default_num_workers() -> int:
    """DataLoader worker processes: 2 (Colab and laptops have 2+ cores), fewer on 1 core, 0 if unknown.

    Lessons 03 to 05.
    """
    try:
        return min(2, os.cpu_count() or 0)
    except NotImplementedError:
        return 0


def create_dataloaders(
    data_dir: str | os.PathLike,
    train_transform: Callable,
    eval_transform: Callable | None = None,
    batch_size: int = 32,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    num_workers: int | None = None,
) -> tuple[DataLoader, DataLoader, DataLoader, list[str]]:
    """Index ``data_dir`` once, split it (stratified, seeded) and wrap each split in a DataLoader.

    - train: ``train_transform``, shuffled by a generator seeded with ``seed``.
    - val and test: ``eval_transform`` (``None`` = use ``train_transform``, for a deterministic one),
      in file order, and every image is kept (no ``drop_last``).
    ``num_workers=None`` picks :func:`default_num_workers`; workers persist across epochs.
    Returns ``(train_loader, val_loader, test_loader, class_names)``; each ``loader.dataset`` is an
    :class:`ImageFolderDataset` with ``.samples`` and ``.targets``. Lessons 03 to 06.
    """
    samples, class_names = find_images(data_dir)
    train_idx, val_idx, test_idx = stratified_split(
        [label for _, label in samples], val_fraction, test_fraction, seed
    )
    eval_transform = train_transform if eval_transform is None else eval_transform
    num_workers = default_num_workers() if num_workers is None else num_workers
    common = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)

    def subset(indices: list[int], transform: Callable) -> ImageFolderDataset:
        return ImageFolderDataset([samples[i] for i in indices], transform)

    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(subset(train_idx, train_transform), shuffle=True, generator=generator, **common)
    val_loader = DataLoader(subset(val_idx, eval_transform), shuffle=False, **common)
    test_loader = DataLoader(subset(test_idx, eval_transform), shuffle=False, **common)
    return train_loader, val_loader, test_loader, class_names
