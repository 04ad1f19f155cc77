"""From samples to DataLoaders, with the course's loader rules written once (lessons 03 to 06)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from helpers.data.datasets import ImageFolderDataset, find_images, stratified_split

# 8 feed even a fast GPU fine-tuning ViT-B/16 (benchmarks/data_loading.py); more cost start-up and memory.
MAX_DEFAULT_WORKERS = 8


def default_num_workers() -> int:
    """DataLoader worker processes: one per CPU this process may use (its affinity), at most
    ``MAX_DEFAULT_WORKERS``; 0 when unknown. Lessons 03 to 05 and the training CLI."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    return min(MAX_DEFAULT_WORKERS, cpus)


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
    """A DataLoader by the course's rules: ``shuffle`` by its own generator seeded with ``seed`` (kept as
    ``loader.generator``, re-seeded per epoch) unless a ``sampler`` orders; None: :func:`default_num_workers`,
    pinned memory with CUDA, persistent workers (False for a loader read once). Lessons 03 to 06."""
    num_workers = default_num_workers() if num_workers is None else num_workers
    generator = None
    if shuffle:
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
    dataset: Callable[[Sequence[tuple[os.PathLike, int]], Callable], Dataset] = ImageFolderDataset,
) -> tuple[DataLoader, DataLoader, DataLoader, list[str]]:
    """``(train, val, test, class_names)``: ``data_dir`` split (stratified, seeded), train shuffled with
    ``train_transform``, val and test in order with ``eval_transform`` (None: the same). ``dataset`` builds
    each split's Dataset from its samples and transform; ``helpers.data.cache.folder_dataset`` reads a
    prepared folder's image cache. Lessons 03-06."""
    samples, class_names = find_images(data_dir)
    train_idx, val_idx, test_idx = stratified_split(
        [label for _, label in samples], val_fraction, test_fraction, seed
    )
    eval_transform = train_transform if eval_transform is None else eval_transform

    def loader(indices: list[int], transform: Callable, **rules) -> DataLoader:
        split = dataset([samples[i] for i in indices], transform)
        return make_loader(
            split, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, **rules
        )

    return (
        loader(train_idx, train_transform, shuffle=True, seed=seed),
        loader(val_idx, eval_transform),
        loader(test_idx, eval_transform, persistent_workers=False),
        class_names,
    )
