"""The training loop of lesson 03, kept apart from the model (like minGPT's ``trainer.py``).

    set_seed          -- one call makes a run repeatable
    train_one_epoch   -- forward, loss, backward, clip, step, over one pass of the data
    fit               -- a whole run of a recipe: epochs, validation, the best epoch's weights

*What* to train with is a :class:`~helpers.train.recipes.Recipe`; saving, resuming and several GPUs wrap
``fit`` from outside (:mod:`helpers.train.run`). Each epoch re-seeds from ``(seed, epoch)``, so a resumed run
ends with the numbers of an uninterrupted one (on a CPU)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from helpers.data.transforms import normalise_batch
from helpers.train.evaluation import evaluate, progress_bar
from helpers.train.precision import autocast, make_scaler, resolve_precision
from helpers.train.recipes import Recipe, make_optimizer, make_schedule

VAL_METRICS = ("loss", "accuracy", "precision", "recall", "f1", "auroc")  # kept per epoch, as val_*


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU). Lessons 03 to 06."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    precision: str = "fp32",
    progress: bool = True,
    description: str = "train",
) -> dict[str, float]:
    """One pass over ``loader``, the scheduler stepped after every batch: mean ``loss`` and ``accuracy``,
    ``images`` and ``seconds``. Lesson 03."""
    device = torch.device(device)
    scaler = make_scaler(device, precision) if scaler is None else scaler  # scales fp16 only
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per step
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    bar = progress_bar(loader, description, progress)
    for step, (images, labels) in enumerate(loader):
        images = images.to(device, non_blocking=True)  # (B, C, H, W), or (B, D) cached features
        images = normalise_batch(images)  # uint8 from the image cache -> normalised floats, on the device
        labels = labels.to(device, non_blocking=True)  # (B,)
        with autocast(device, precision):
            logits = model(images)  # (B, num_classes)
            loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().double() * len(labels)
        correct += (logits.detach().argmax(dim=1) == labels).sum()
        seen += len(labels)
        bar.update()
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    if seen == 0:
        raise ValueError("the train loader produced no batches; is the training split empty?")
    return {
        "loss": loss_sum.item() / seen,
        "accuracy": correct.item() / seen,
        "images": seen,
        "seconds": time.perf_counter() - start,
    }


@dataclass
class TrainingState:
    """A run in progress, updated after every epoch (:mod:`helpers.train.state` saves it). Lesson 03."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped after every batch
    scaler: torch.amp.GradScaler  # scales fp16 losses; off in fp32 and bf16
    settings: dict[str, Any]  # what a resumed run must match: recipe, seed, precision, steps per epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per completed epoch
    best_epoch: int = 0  # 0 = none yet
    best_weights: dict[str, torch.Tensor] | None = None  # the best epoch's state dict, on the CPU


def new_training_state(
    model: nn.Module, loader: Iterable, recipe: Recipe, *, device: torch.device, precision: str, seed: int
) -> TrainingState:
    """Optimizer, learning-rate schedule and gradient scaler, as ``recipe`` says; no epoch done yet."""
    optimizer = make_optimizer(model, recipe)
    steps = len(loader)
    return TrainingState(
        optimizer=optimizer,
        scheduler=make_schedule(optimizer, recipe, steps),
        scaler=make_scaler(device, precision),
        settings={"recipe": recipe.to_dict(), "seed": seed, "precision": precision, "steps_per_epoch": steps},
    )


def seed_epoch(loader: Iterable, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s shuffle order, augmentation and dropout depend only on (seed, epoch)."""
    s = (seed * 1_000_003 + epoch * 1_009) % 2**63
    set_seed(s)
    if getattr(loader, "generator", None) is not None:  # orders the shuffle and seeds the workers
        loader.generator.manual_seed(s)
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):  # shuffles by epoch (several GPUs)
        loader.sampler.set_epoch(epoch)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    recipe: Recipe,
    *,
    device: torch.device | str,
    test_loader: Iterable | None = None,
    precision: str = "fp32",
    seed: int = 42,
    progress: bool = True,
    state: TrainingState | None = None,
    after_epoch: Callable[[TrainingState, bool], None] | None = None,
    train_model: nn.Module | None = None,
) -> dict[str, Any]:
    """Train for ``recipe.epochs`` epochs; the best (validation accuracy, then lower loss) epoch's weights end
    in the model and give ``val`` and ``test``. ``state``, ``after_epoch`` and ``train_model`` (a multi-GPU
    wrapper) serve :mod:`helpers.train.run`. Returns ``{"history", "best_epoch", "val", "test",
    "train_images_per_second", "seconds"}``. Lessons 03 to 06."""
    start_time = time.perf_counter()
    device = torch.device(device)
    precision = resolve_precision(precision, device)  # "auto" -> what this device runs fastest
    model.to(device)
    if state is None:
        state = new_training_state(model, train_loader, recipe, device=device, precision=precision, seed=seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    measure = {"device": device, "precision": precision}  # fake (class 0) is the positive class

    for epoch in range(len(state.history) + 1, recipe.epochs + 1):  # a resumed state has epochs done
        epoch_start = time.perf_counter()
        seed_epoch(train_loader, seed, epoch)
        train = train_one_epoch(
            train_model or model, train_loader, optimizer=state.optimizer, loss_fn=loss_fn, device=device,
            scheduler=state.scheduler, scaler=state.scaler, grad_clip=recipe.grad_clip, precision=precision,
            progress=progress, description=f"epoch {epoch}/{recipe.epochs}",
        )  # fmt: skip
        val = evaluate(model, val_loader, **measure)
        lr = max(group["lr"] for group in state.optimizer.param_groups)  # after the epoch's last step
        entry = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            **{f"val_{key}": val[key] for key in VAL_METRICS},
            "lr": lr,
            "train_images_per_second": train["images"] / train["seconds"],
            "seconds": time.perf_counter() - epoch_start,
        }
        state.history.append(entry)
        best = state.history[state.best_epoch - 1] if state.best_epoch else None
        improved = best is None or (val["accuracy"], -val["loss"]) > (best["val_accuracy"], -best["val_loss"])
        if improved:
            state.best_epoch = epoch
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if after_epoch is not None:
            after_epoch(state, improved)  # e.g. save the training state
        if progress:
            tqdm.write(
                f"epoch {epoch:3d}/{recipe.epochs} | train loss {train['loss']:.4f} "
                f"acc {train['accuracy']:.3f} | val loss {val['loss']:.4f} "
                f"acc {val['accuracy']:.3f} | lr {lr:.2e} | {entry['seconds']:.1f}s"
                + (" *best*" if improved else "")
            )

    # the end: the best epoch's weights, measured on the validation and test sets
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    rates = [entry["train_images_per_second"] for entry in state.history]
    return {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "val": evaluate(model, val_loader, **measure),
        "test": evaluate(model, test_loader, **measure) if test_loader is not None else None,
        "train_images_per_second": sum(rates) / len(rates) if rates else None,
        "seconds": time.perf_counter() - start_time,
    }
