"""From a folder of images to DataLoaders: indexing, the Dataset, a leak-free split (lesson 03).

Both datasets of the course use torchvision's ImageFolder layout, one folder per class, sorted
names = labels::

    root/fake_images/*.png    label 0
    root/real_images/*.png    label 1

:func:`find_images` indexes a folder and skips undecodable files with one warning; what it learnt
is stored beside the data (``root/.image_index.json``) and reused until a file changes.
:func:`stratified_split` draws a seeded train/val/test split that keeps each class's share in every
split and never drops an image; :func:`create_dataloaders` does both and wraps each split in a
DataLoader; :func:`first_per_class` takes a smaller, still balanced, part of a split.
:class:`ImageFolderDataset` reads a folder's decoded image cache (:mod:`helpers.data.cache`) when
there is one. (In a multi-GPU run, :func:`helpers.train.distributed.rank_zero_first` lets process 0 index
first; the others then reuse its stored index.)
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from helpers._files import write_json
from helpers.data.cache import ImageCache
from helpers.data.images import ImageLoadError, list_image_files, load_image_rgb, warn_skipped

CLASS_NAMES = ("fake_images", "real_images")  # sorted, as ImageFolder orders them: fake = 0, real = 1
LAYOUT_HELP = "root/fake_images/*.png and root/real_images/*.png (one sub-folder per class)"
INDEX_FILE = ".image_index.json"  # what find_images learnt about each file, stored beside the data
# Default DataLoader workers: the CPUs this process may use, at most this many (see default_num_workers).
MAX_DEFAULT_WORKERS = 8
Sample = TypeVar("Sample", bound=tuple)


def _layout_error(root: Path, problem: str) -> ValueError:
    return ValueError(
        f"{root}: {problem}. Expected an image folder with at least two classes: {LAYOUT_HELP}. "
        "Make the toy set with `python -m helpers.data make-toy --out data/toy` or fetch the real one "
        "with `python -m helpers.data download --out data/fake_or_real`."
    )


def vanished(path: Path) -> str:
    """Why a file that was listed cannot be read any more (it is skipped like an undecodable one)."""
    return f"{path}: vanished before it could be read (deleted, moved, or a link to a missing file)"


def _decode_problem(path: Path) -> str | None:
    """None if ``path`` decodes (JPEGs at about 1/8 scale: all compressed data is still read),
    else why not."""
    try:
        load_image_rgb(path, draft_size=64)
    except ImageLoadError as error:
        return str(error)
    except FileNotFoundError:
        return vanished(path)
    return None


def _stat(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path``: what says a file is unchanged. None when it vanished."""
    try:
        file_stat = path.stat()
    except FileNotFoundError:
        return None
    return file_stat.st_size, file_stat.st_mtime_ns


def _read_index(root: Path) -> dict[str, list]:
    """The stored index of ``root``: relative name -> [size, mtime_ns, problem or None]."""
    try:
        return dict(json.loads((root / INDEX_FILE).read_text(encoding="utf-8")).get("files", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _check_files(root: Path, paths: list[Path]) -> list[str | None]:
    """Why each of ``paths`` cannot be used (None: it decodes), reusing what is known.

    Known: the stored index (a file with the same size and mtime was checked before) and the image
    cache (a cached file decoded when the cache was made). Only the rest is decoded; the stored index
    is then updated (quietly skipped when ``root`` is read-only).
    """
    stored, cache = _read_index(root), ImageCache.open(root)
    names = [path.relative_to(root).as_posix() for path in paths]
    stats = [_stat(path) for path in paths]
    problems: list[str | None] = [None] * len(paths)
    to_decode = []
    for i, (path, name, stat) in enumerate(zip(paths, names, stats, strict=True)):
        known = stored.get(name)
        if stat is None:
            problems[i] = vanished(path)
        elif known is not None and tuple(known[:2]) == stat:
            problems[i] = known[2]
        elif cache is None or cache.row(path) is None:
            to_decode.append(i)
    if to_decode:
        # PIL decodes without holding the GIL, so threads are enough.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            decoded = pool.map(_decode_problem, [paths[i] for i in to_decode])
            for i, problem in zip(to_decode, decoded, strict=True):
                problems[i] = problem
    index = {
        name: [*stat, problem]
        for name, stat, problem in zip(names, stats, problems, strict=True)
        if stat is not None
    }
    if index != stored:
        try:
            write_json(root / INDEX_FILE, {"version": 1, "files": index})
        except OSError:
            pass  # a read-only dataset is indexed again next time, as before the index existed
    return problems


def find_images(root: str | os.PathLike, *, check: bool = True) -> tuple[list[tuple[Path, int]], list[str]]:
    """Index an ImageFolder tree: ``([(path, label), ...], class_names)`` (lesson 03).

    Class names are the sub-folders of ``root`` in sorted order (``fake_images`` = 0, ``real_images``
    = 1). Files without an image extension are ignored. With ``check=True`` every image is decoded
    once (JPEGs at 1/8 scale, which still reads all of the compressed data), so empty, truncated,
    corrupt or oversized files, and files that vanished since they were listed, are found now rather
    than in the middle of an epoch; they are skipped with ONE warning that names them. What the
    check found is stored in ``root/.image_index.json`` with each file's size and modification time,
    so the next call (another loader, another process of a multi-GPU run) decodes only files that
    are new or changed.

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
        problems = _check_files(root, [path for path, _ in candidates])
    samples = [sample for sample, problem in zip(candidates, problems, strict=True) if problem is None]
    warn_skipped([problem for problem in problems if problem is not None], f"under {root}")
    if len({label for _, label in samples}) < 2:
        raise _layout_error(root, "fewer than two classes have a decodable image")
    return samples, class_names


def _first_resize(transform: Callable | None) -> int | None:
    """The size a v2 transform resizes the shorter side to before anything else, or None."""
    steps = getattr(transform, "transforms", [transform])
    first = steps[0] if steps else None
    if isinstance(first, v2.Resize) and len(first.size) == 1 and first.max_size is None:
        return int(first.size[0])
    return None


class ImageFolderDataset(Dataset):
    """``(image tensor, label)`` pairs from a list of ``(path, label)`` samples (see :func:`find_images`).

    Images are decoded with :func:`helpers.data.images.load_image_rgb`, then passed through ``transform``.
    When the folder has a decoded image cache (:mod:`helpers.data.cache`) and ``transform`` is a
    ``torchvision.transforms.v2`` transform (every one in :mod:`helpers.data.transforms` is), an unchanged
    file is read from the cache instead, as a uint8 tensor (3, H, W): no decoding, the same pixels
    (the module docstring of :mod:`helpers.data.cache` says when exactly, and when within 1/255).
    ``cached`` counts the samples read that way. Lessons 03 to 06.
    """

    def __init__(self, samples: Sequence[tuple[str | os.PathLike, int]], transform: Callable | None = None):
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.targets = [label for _, label in self.samples]  # as in torchvision's ImageFolder
        self.transform = transform
        paths = [path for path, _ in self.samples]
        cache = ImageCache.for_files(paths) if isinstance(transform, v2.Transform) else None
        resize = _first_resize(transform)
        self.cache_rows = [cache.row(path, resize) if cache else None for path in paths]  # None: decode
        self.cache = cache if any(row is not None for row in self.cache_rows) else None
        self.cached = sum(row is not None for row in self.cache_rows)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        row = self.cache_rows[index]
        image: Image.Image | torch.Tensor
        if row is not None and self.cache is not None:
            image = self.cache.tensor(row)  # (3, H, W) uint8, shorter side = the cache's size
        else:
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


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, which containers and job schedulers restrict),
    or all of the machine's where the system does not say; 0 when unknown."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 0


def default_num_workers() -> int:
    """DataLoader worker processes: one per available CPU, at most ``MAX_DEFAULT_WORKERS`` (8); 0 when
    the number of CPUs is unknown. Lessons 03 to 05 and the training CLI.

    Why 8: one worker decodes ~300 256-pixel PNGs per second and reads several thousand images per
    second from the image cache (``benchmarks/data_loading.py``), so 8 feed even a fast GPU
    fine-tuning ViT-B/16, while each worker is a whole Python process holding torch (a few hundred MB)
    and more of them only add start-up time and memory. On Colab's 2 vCPUs this gives 2.
    """
    return min(MAX_DEFAULT_WORKERS, available_cpus())


def create_dataloaders(
    data_dir: str | os.PathLike,
    train_transform: Callable,
    eval_transform: Callable | None = None,
    batch_size: int = 32,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
) -> tuple[DataLoader, DataLoader, DataLoader, list[str]]:
    """Index ``data_dir``, split it (stratified, seeded) and wrap each split in a DataLoader.

    - train: ``train_transform``, shuffled by a generator seeded with ``seed``.
    - val and test: ``eval_transform`` (``None`` = use ``train_transform``, for a deterministic one),
      in file order, and every image is kept (no ``drop_last``).
    ``num_workers=None`` picks :func:`default_num_workers`; the train and val loaders keep their
    workers across epochs (the test loader runs once). ``pin_memory=None`` pins batches in page-locked
    memory when a CUDA GPU is present, so copies to it are faster and can overlap computation.
    When ``data_dir`` has a decoded image cache, every loader reads from it (see
    :class:`ImageFolderDataset`). Returns ``(train_loader, val_loader, test_loader, class_names)``;
    each ``loader.dataset`` is an :class:`ImageFolderDataset` with ``.samples`` and ``.targets``.
    Lessons 03 to 06.
    """
    samples, class_names = find_images(data_dir)
    train_idx, val_idx, test_idx = stratified_split(
        [label for _, label in samples], val_fraction, test_fraction, seed
    )
    eval_transform = train_transform if eval_transform is None else eval_transform
    num_workers = default_num_workers() if num_workers is None else num_workers
    pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
    common = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)

    def subset(indices: list[int], transform: Callable) -> ImageFolderDataset:
        return ImageFolderDataset([samples[i] for i in indices], transform)

    generator = torch.Generator().manual_seed(seed)
    every_epoch = dict(persistent_workers=num_workers > 0, **common)
    train_loader = DataLoader(
        subset(train_idx, train_transform), shuffle=True, generator=generator, **every_epoch
    )
    val_loader = DataLoader(subset(val_idx, eval_transform), shuffle=False, **every_epoch)
    test_loader = DataLoader(subset(test_idx, eval_transform), shuffle=False, **common)
    return train_loader, val_loader, test_loader, class_names
