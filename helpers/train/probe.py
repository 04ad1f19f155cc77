"""The linear probe of lesson 04: a frozen backbone's features computed once, then only the head trained
(by :func:`helpers.train.loop.fit`). Give it loaders with the eval transform: augmentation would be frozen in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers.data.loaders import make_loader
from helpers.train.evaluation import extract_features
from helpers.train.loop import fit
from helpers.train.recipes import Recipe


def _loader(features: torch.Tensor, targets: torch.Tensor, batch_size: int, shuffle: bool) -> DataLoader:
    """Batches of cached features; fit re-seeds the shuffled one's generator every epoch."""
    return make_loader(
        TensorDataset(features, targets), batch_size=batch_size, shuffle=shuffle, num_workers=0
    )


def fit_linear_probe(
    model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, recipe: Recipe, *,
    train_head: Callable[..., dict[str, Any]] = fit,  # the command line passes run.resumable_fit
    precision: str = "fp32",  # of the features; the head trains in fp32
    device: torch.device | str, test_loader: Iterable | None = None, seed: int = 42, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Freeze ``model`` but its head; train the head, in place, on features computed once. ``train_head``'s
    dict plus ``"feature_seconds"`` (``seconds`` and images per second count the whole probe). Lesson 04."""
    start = time.perf_counter()
    device = torch.device(device)
    model.to(device)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    extract = {"device": device, "precision": precision, "progress": progress}
    batch_size = train_loader.batch_size or 32
    # in dataset order (the train loader would shuffle): row i belongs to image i
    workers = {"num_workers": train_loader.num_workers, "collate_fn": train_loader.collate_fn}
    in_order = make_loader(train_loader.dataset, batch_size=batch_size, persistent_workers=False, **workers)
    train = _loader(*extract_features(model, in_order, **extract), batch_size, shuffle=True)
    val = _loader(*extract_features(model, val_loader, **extract), val_loader.batch_size or batch_size, False)
    test = None
    if test_loader is not None:
        test = _loader(*extract_features(model, test_loader, **extract), batch_size, shuffle=False)
    feature_seconds = time.perf_counter() - start
    result = train_head(model.head, train, val, recipe, device=device, test_loader=test, seed=seed,
                        progress=progress)  # fmt: skip
    result["feature_seconds"] = feature_seconds
    result["seconds"] += feature_seconds
    result["train_images_per_second"] = len(train.dataset) * recipe.epochs / result["seconds"]
    return result
