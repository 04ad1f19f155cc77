"""From samples to DataLoaders, with the course's loader rules written once (lesson 03).

:func:`make_loader` makes every DataLoader of the course (seeded shuffling, worker processes,
pinned memory); :func:`folder_dataset` makes the Dataset of an image folder's samples, reading the
folder's image cache when it has one; :func:`create_dataloaders` indexes a folder, splits it and
wraps each split in a loader. Lessons 03 to 06 and ``python -m helpers.train``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from helpers.data.cache import CachedImageFolder
from helpers.data.datasets import ImageFolderDataset, find_images, stratified_split

# Default DataLoader workers: the CPUs this process may use, at most this many (see default_num_workers).
MAX_DEFAULT_WORKERS = 8


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


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    sampler: Sampler | None = None,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` in batches of ``batch_size``, by the course's rules:

    - ``shuffle=True``: the order comes from the loader's own ``torch.Generator``, seeded with ``seed``
      (None: drawn from torch's global generator, which ``loop.set_seed`` seeds). It is kept as
      ``loader.generator``, so training can re-seed it every epoch; it also seeds the workers.
    - ``sampler`` (e.g. a ``DistributedSampler``): it picks the order instead of ``shuffle``.
    - ``num_workers=None``: :func:`default_num_workers` worker processes (0: the calling process).
    - ``pin_memory=None``: batches in page-locked memory when a CUDA GPU is present, so copies to it
      are faster and can overlap computation.
    - ``persistent_workers=None``: with workers, they stay up between epochs (a loader read every
      epoch); pass False for a loader read once. They end with the loader either way.
    - every sample is kept (the last batch may be smaller) unless ``drop_last``.
    """
    num_workers = default_num_workers() if num_workers is None else num_workers
    generator = None
    if shuffle:
        # as DataLoader seeds itself without a generator: a number from torch's global generator
        start = seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator().manual_seed(start)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0 and persistent_workers is not False,
        collate_fn=collate_fn,
        drop_last=drop_last,
    )


def folder_dataset(
    samples: Sequence[tuple[str | os.PathLike, int]], transform: Callable | None = None
) -> ImageFolderDataset:
    """The Dataset of ``samples`` (files of an image folder, see :func:`find_images`): a
    :class:`~helpers.data.cache.CachedImageFolder` when the folder's image cache holds some of them
    for this ``transform``, else the plain :class:`~helpers.data.datasets.ImageFolderDataset`.
    Both give the same pixels. Lessons 03 to 06."""
    dataset = CachedImageFolder(samples, transform)
    return dataset if dataset.cached else ImageFolderDataset(samples, transform)


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
    ``num_workers`` and ``pin_memory`` follow :func:`make_loader` (None: its defaults); the train and
    val loaders keep their workers across epochs, the test loader (read once) does not. When
    ``data_dir`` has a decoded image cache, every loader reads from it (:func:`folder_dataset`).
    Returns ``(train_loader, val_loader, test_loader, class_names)``; each ``loader.dataset`` has
    ``.samples`` and ``.targets``. Lessons 03 to 06.
    """
    samples, class_names = find_images(data_dir)
    train_idx, val_idx, test_idx = stratified_split(
        [label for _, label in samples], val_fraction, test_fraction, seed
    )
    eval_transform = train_transform if eval_transform is None else eval_transform

    def loader(indices: list[int], transform: Callable, **rules) -> DataLoader:
        dataset = folder_dataset([samples[i] for i in indices], transform)
        return make_loader(
            dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, **rules
        )

    return (
        loader(train_idx, train_transform, shuffle=True, seed=seed),
        loader(val_idx, eval_transform),
        loader(test_idx, eval_transform, persistent_workers=False),
        class_names,
    )
