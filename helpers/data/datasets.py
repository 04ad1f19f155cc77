"""A folder of images as a Dataset (lesson 03): indexing, the Dataset, a leak-free split. The layout is
torchvision's ImageFolder: ``root/fake_images/*.png`` (label 0) and ``root/real_images/*.png`` (1)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from torch.utils.data import Dataset

from helpers.data.images import list_image_files, load_image_rgb
from helpers.data.index import usable_files

CLASS_NAMES = ("fake_images", "real_images")  # sorted, as ImageFolder orders them: fake = 0, real = 1
LAYOUT_HELP = "root/fake_images/*.png and root/real_images/*.png (one sub-folder per class)"
Sample = TypeVar("Sample", bound=tuple)


def _layout_error(root: Path, problem: str) -> ValueError:
    return ValueError(
        f"{root}: {problem}. Expected an image folder with at least two classes: {LAYOUT_HELP}. "
        "Make the toy set with `python -m helpers.data make-toy --out data/toy` or fetch the real one "
        "with `python -m helpers.data download --out data/fake_or_real`."
    )


def find_images(root: str | os.PathLike, *, check: bool = True) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(path, label), ...], class_names)`` of an ImageFolder tree, classes = sorted sub-folders; with
    ``check``, files that do not decode skipped with ONE warning (:mod:`helpers.data.index`). Lesson 03."""
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

    samples = [(path, label) for label, name in enumerate(class_names) for path in files_per_class[name]]
    if check:
        usable = set(usable_files(root, [path for path, _ in samples]))
        samples = [(path, label) for path, label in samples if path in usable]
    if len({label for _, label in samples}) < 2:
        raise _layout_error(root, "fewer than two classes have a decodable image")
    return samples, class_names


class ImageFolderDataset(Dataset):
    """``(image, label)`` pairs from ``(path, label)`` samples: each file decoded to PIL RGB, then
    ``transform``; ``targets`` are the labels, as in torchvision's ImageFolder. Lessons 03 to 06."""

    def __init__(self, samples: Sequence[tuple[str | os.PathLike, int]], transform: Callable | None = None):
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.targets = [label for _, label in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = load_image_rgb(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def first_per_class(samples: Sequence[Sample], per_class: int) -> list[Sample]:
    """The first ``per_class`` of each label among ``(..., label)`` samples, in order (0: all): a
    smaller, balanced part of a randomly drawn split. Lessons 04 and 05."""
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
    """Seeded train/val/test indices (sorted, disjoint, covering all) keeping the class proportions:
    per class, ``round(n * fraction)`` to val and to test (at least one if above 0). Lesson 03."""
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
