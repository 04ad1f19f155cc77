"""What wraps :func:`helpers.train.loop.fit` for long runs: saved state, exact resume, several GPUs.

Lesson 03 explains ``fit``; nothing here changes what it computes. :func:`resumable_fit` adds, from
outside: the training state saved after every epoch to ``out_dir/training_state``
(:mod:`helpers.train.state`), ``resume=True`` to continue a killed run from it and end with the same
numbers as an uninterrupted run, and, under ``torchrun``, the DistributedDataParallel wrapper
(:mod:`helpers.train.distributed`) through which the training step runs. ``python -m helpers.train``
calls it; :func:`repeatable_train_loader` gives it a train loader whose every epoch can be re-seeded.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from helpers.data.loaders import make_loader
from helpers.model import pretrained
from helpers.model.vit import ViT, get_config
from helpers.train import distributed, probe
from helpers.train import state as training_state
from helpers.train.loop import TrainingState, fit, new_training_state
from helpers.train.precision import resolve_precision
from helpers.train.recipes import Recipe


def repeatable_train_loader(
    loader: DataLoader, seed: int, sampler: DistributedSampler | None = None
) -> DataLoader:
    """The train loader, rebuilt so that every epoch's randomness can be re-seeded by ``fit``.

    Persistent workers would carry their random state from one epoch to the next; new workers per
    epoch take their seeds from the loader's generator, which ``fit`` re-seeds from (seed, epoch),
    so a resumed run repeats the same augmentation. Under DDP the ``sampler`` shards and shuffles.
    """
    return make_loader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=True,
        seed=seed,
        sampler=sampler,
        num_workers=loader.num_workers,
        persistent_workers=False,
    )


def resumable_fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    recipe: Recipe,
    *,
    device: torch.device | str,
    out_dir: str | Path | None,
    resume: bool = False,
    test_loader: Iterable | None = None,
    precision: str = "fp32",
    seed: int = 42,
    progress: bool = True,
    positive_class: int = 0,
) -> dict[str, Any]:
    """:func:`helpers.train.loop.fit`, with the training state saved after every epoch when ``out_dir``
    is given, continued from it with ``resume=True`` (or started afresh when there is none), and the
    training step run through DistributedDataParallel under ``torchrun``.

    Under DDP every process evaluates the whole validation and test sets with identical weights, so
    all agree on the metrics and the best epoch; only process 0 writes files. The history's train
    loss and accuracy are then process 0's share of the training images.
    """
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    model.to(device)
    state = new_training_state(model, train_loader, recipe, device=device, precision=precision, seed=seed)
    folder = Path(out_dir) / training_state.FOLDER if out_dir is not None else None
    if resume:
        if folder is None:
            raise ValueError("resume=True needs the out_dir of the run to continue")
        done = training_state.resume(folder, model=model, state=state, train_loader=train_loader)
        if progress:
            where = f"after epoch {done} of {recipe.epochs}" if done else "at epoch 1: nothing saved yet"
            tqdm.write(f"Resuming from {folder} {where}.")

    def save(state: TrainingState, improved: bool) -> None:
        if folder is not None and distributed.current_rank() == 0:
            training_state.save_training_state(folder, model=model, state=state, new_best=improved)

    return fit(
        model,
        train_loader,
        val_loader,
        recipe,
        device=device,
        test_loader=test_loader,
        precision=precision,
        seed=seed,
        progress=progress,
        positive_class=positive_class,
        state=state,
        after_epoch=save,
        train_model=distributed.wrap_model(model, device),
    )


def build_model(args: argparse.Namespace, num_classes: int) -> tuple[ViT, str]:
    """The model for ``args.recipe`` and where its weights came from ("random init", "ImageNet", ...)."""
    recipe = args.recipe
    if not recipe.pretrained:
        return ViT(get_config(args.model, image_size=args.image_size, num_classes=num_classes)), "random init"
    model = pretrained.load_pretrained_vit_b16(
        num_classes, args.image_size, allow_random=args.allow_random_weights
    )
    origin = (
        "ImageNet" if pretrained.weights_cache_path().is_file() else "RANDOM (ImageNet weights unavailable)"
    )
    return pretrained.freeze_for_recipe(model, recipe), origin


def train_model(model, train_loader, val_loader, test_loader, recipe, args, device, progress) -> dict:
    """The whole model (:func:`helpers.train.run.resumable_fit`), or only its head on features
    computed once (a linear probe, :mod:`helpers.train.probe`), saving the training state in ``--out``."""
    settings = {"device": device, "seed": args.seed, "progress": progress, "out_dir": args.out}
    if recipe.train_backbone:
        return resumable_fit(
            model,
            train_loader,
            val_loader,
            recipe,
            test_loader=test_loader,
            precision=args.precision,
            resume=args.resume,
            **settings,
        )
    start = time.perf_counter()
    features = probe.feature_loaders(
        model,
        train_loader,
        val_loader,
        test_loader,
        device=device,
        precision=args.precision,
        progress=progress,
    )
    feature_seconds = time.perf_counter() - start
    train, val, test = features
    result = resumable_fit(model.head, train, val, recipe, test_loader=test, resume=args.resume, **settings)
    return probe.with_feature_time(result, feature_seconds, len(train.dataset) * recipe.epochs)
