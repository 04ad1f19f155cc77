"""What wraps :func:`helpers.train.loop.fit` for ``python -m helpers.train``'s long runs, without changing
what it computes: the state saved every epoch, an exact resume, several GPUs under ``torchrun``."""

from __future__ import annotations

import argparse
import functools
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
    """The train loader without persistent workers: new workers each epoch take their seeds from the
    generator ``fit`` re-seeds from (seed, epoch). Under DDP the ``sampler`` shards and shuffles."""
    return make_loader(
        loader.dataset, batch_size=loader.batch_size, shuffle=True, seed=seed, sampler=sampler,
        num_workers=loader.num_workers, persistent_workers=False,
    )  # fmt: skip


def resumable_fit(
    model: nn.Module, train_loader: Iterable, val_loader: Iterable, recipe: Recipe, *,
    device: torch.device | str, out_dir: str | Path | None, resume: bool = False,
    test_loader: Iterable | None = None, precision: str = "fp32", seed: int = 42, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """``fit``, saving the state in ``out_dir`` every epoch and continuing from it with ``resume=True``.
    Under DDP every process evaluates all of val and test (so all agree on the best epoch); process 0
    writes, and the train loss and accuracy are its share."""
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
        model, train_loader, val_loader, recipe, device=device, test_loader=test_loader, precision=precision,
        seed=seed, progress=progress, state=state, after_epoch=save,
        train_model=distributed.wrap_model(model, device),  # the training step goes through DDP
    )  # fmt: skip


def build_model(args: argparse.Namespace, num_classes: int) -> tuple[ViT, str]:
    """The model for ``args.recipe`` and where its weights came from ("random init", "ImageNet", ...)."""
    if not args.recipe.pretrained:
        return ViT(get_config(args.model, image_size=args.image_size, num_classes=num_classes)), "random init"
    random_ok = args.allow_random_weights
    model = pretrained.load_pretrained_vit_b16(num_classes, args.image_size, allow_random=random_ok)
    found = pretrained.weights_cache_path().is_file()
    origin = "ImageNet" if found else "RANDOM (ImageNet weights unavailable)"
    return pretrained.freeze_for_recipe(model, args.recipe), origin


def train_model(model, train_loader, val_loader, test_loader, recipe, args, device, progress) -> dict:
    """:func:`resumable_fit` on the whole model, or on its head over features computed once (a linear
    probe, :mod:`helpers.train.probe`); the training state goes to ``--out``."""
    trainer = functools.partial(resumable_fit, out_dir=args.out, resume=args.resume)
    if not recipe.train_backbone:
        trainer = functools.partial(probe.fit_linear_probe, train_head=trainer)
    return trainer(
        model, train_loader, val_loader, recipe, device=device, test_loader=test_loader,
        precision=args.precision, seed=args.seed, progress=progress,
    )  # fmt: skip
