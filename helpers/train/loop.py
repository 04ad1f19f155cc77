"""The training loop, kept apart from the model (like minGPT's ``trainer.py`` beside ``model.py``).

In the order lesson 03 meets them:

    set_seed          -- one call makes a run repeatable
    train_one_epoch   -- forward, loss, backward, clip, step, over one pass of the data
    fit               -- a whole run of a recipe: epochs, validation, the best epoch's weights

*What* to train with (optimiser, learning rate, schedule, regularisation) is a
:class:`helpers.train.recipes.Recipe`; measuring the model is :mod:`helpers.train.evaluation`; the
numeric format of the forward pass (``precision``) is :mod:`helpers.train.precision`. Saving the
training state after every epoch, resuming a killed run and several GPUs wrap ``fit`` from outside
(:mod:`helpers.train.run`); the linear probe of lesson 04 is :mod:`helpers.train.probe`.

**Repeatable runs.** At the start of every epoch the random number generators (Python, NumPy,
PyTorch, and the train loader's own generator) are re-seeded from ``(seed, epoch)``, so epoch ``e``'s
shuffle order, augmentations and dropout masks depend only on ``seed`` and ``e``. That is what lets
a resumed run end with exactly the numbers of an uninterrupted one (on a CPU).
"""

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

from helpers.train.evaluation import evaluate, progress_bar
from helpers.train.precision import autocast, make_scaler, resolve_precision
from helpers.train.recipes import Recipe, make_optimizer, make_schedule

VAL_METRICS = ("loss", "accuracy", "precision", "recall", "f1", "auroc")  # kept per epoch, as val_*


# ---------------------------------------------------------------------------------------------
# Randomness
# ---------------------------------------------------------------------------------------------


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) with ``seed``. Lessons 03 to 06."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (1-based) of a run seeded with ``seed``. Lesson 03."""
    return (seed * 1_000_003 + epoch * 1_009) % 2**63


# ---------------------------------------------------------------------------------------------
# One epoch of training, prediction and metrics
# ---------------------------------------------------------------------------------------------


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
    """One pass over ``loader``: forward, loss, backward, gradient clipping (when ``grad_clip`` is
    set), optimizer step, and ``scheduler.step()`` after every batch (lesson 03).

    ``scaler`` (default: :func:`helpers.train.precision.make_scaler`) scales the loss in fp16 and does
    nothing otherwise, so there is one path for every precision. Returns the mean loss and the
    accuracy over the images seen, plus ``images`` and ``seconds``.
    """
    device = torch.device(device)
    scaler = make_scaler(device, precision) if scaler is None else scaler
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per step
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    bar = progress_bar(loader, description, progress)
    for step, (images, labels) in enumerate(loader):
        images = images.to(device, non_blocking=True)  # (B, C, H, W), or (B, D) cached features
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


# ---------------------------------------------------------------------------------------------
# fit: a whole run of a recipe
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainingState:
    """A run in progress: what ``fit`` builds from the recipe before the first epoch and updates after
    every epoch (:mod:`helpers.train.state` saves it to disk and reads it back). Lesson 03."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped after every batch
    scaler: torch.amp.GradScaler  # scales fp16 losses; switched off in fp32 and bf16
    settings: dict[str, Any]  # what a resumed run must match: recipe, seed, precision, steps per epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per completed epoch
    best_epoch: int = 0  # 0 = none yet
    best_weights: dict[str, torch.Tensor] | None = None  # the best epoch's state dict, on the CPU

    @property
    def best_entry(self) -> dict[str, Any] | None:
        return self.history[self.best_epoch - 1] if self.best_epoch else None


def new_training_state(
    model: nn.Module,
    train_loader: Iterable,
    recipe: Recipe,
    *,
    device: torch.device,
    precision: str,
    seed: int,
) -> TrainingState:
    """Optimizer, learning-rate schedule and gradient scaler, as ``recipe`` says; no epoch done yet."""
    optimizer = make_optimizer(model, recipe)
    return TrainingState(
        optimizer=optimizer,
        scheduler=make_schedule(optimizer, recipe, len(train_loader)),
        scaler=make_scaler(device, precision),
        settings={
            "recipe": recipe.to_dict(),
            "seed": seed,
            "precision": precision,
            "steps_per_epoch": len(train_loader),
        },
    )


def seed_epoch(loader: Iterable, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s shuffle order, augmentation and dropout depend only on (seed, epoch)."""
    s = epoch_seed(seed, epoch)
    set_seed(s)
    generator = getattr(loader, "generator", None)
    if generator is not None:  # the loader's own generator orders its shuffle and seeds its workers
        generator.manual_seed(s)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):  # a sampler that shuffles by epoch (several GPUs)
        sampler.set_epoch(epoch)


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
    positive_class: int = 0,
    state: TrainingState | None = None,
    after_epoch: Callable[[TrainingState, bool], None] | None = None,
    train_model: nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``recipe.epochs`` epochs as ``recipe`` says (lessons 03 to 06).

    After every epoch the model is evaluated on ``val_loader``; the weights of the best epoch
    (highest validation accuracy, ties broken by lower validation loss) are kept, put back into the
    model at the end, and used for the final ``val`` and ``test`` metrics. ``precision`` is the numeric
    format of the forward passes ("auto": :func:`helpers.train.precision.resolve_precision`).

    The last three arguments are for what wraps ``fit`` from outside (:mod:`helpers.train.run`):
    ``state`` continues a run (its history says how many epochs are done), ``after_epoch(state,
    improved)`` runs after every epoch (saving), ``train_model`` is what the training step calls (a
    multi-GPU wrapper around ``model``).

    Returns ``{"history": [one dict of plain numbers per epoch], "best_epoch": int,
    "val": evaluate(...), "test": evaluate(...) or None, "train_images_per_second": float,
    "seconds": float}``.
    """
    start_time = time.perf_counter()
    device = torch.device(device)
    precision = resolve_precision(precision, device)  # "auto" -> what this device runs fastest
    model.to(device)
    if state is None:
        state = new_training_state(model, train_loader, recipe, device=device, precision=precision, seed=seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    measure = {"device": device, "precision": precision, "positive_class": positive_class}

    for epoch in range(len(state.history) + 1, recipe.epochs + 1):
        epoch_start = time.perf_counter()
        # seed the epoch: its shuffle order, augmentations and dropout depend only on (seed, epoch)
        seed_epoch(train_loader, seed, epoch)
        # train
        train = train_one_epoch(
            train_model or model,
            train_loader,
            optimizer=state.optimizer,
            loss_fn=loss_fn,
            device=device,
            scheduler=state.scheduler,
            scaler=state.scaler,
            grad_clip=recipe.grad_clip,
            precision=precision,
            progress=progress,
            description=f"epoch {epoch}/{recipe.epochs}",
        )
        # validate
        val = evaluate(model, val_loader, **measure)
        lr = max(group["lr"] for group in state.optimizer.param_groups)
        entry = {
            "epoch": epoch,
            **{f"train_{key}": train[key] for key in ("loss", "accuracy")},
            **{f"val_{key}": val[key] for key in VAL_METRICS},
            "lr": lr,  # after the epoch's last step
            "train_images_per_second": train["images"] / train["seconds"],
            "seconds": time.perf_counter() - epoch_start,
        }
        state.history.append(entry)
        # keep the best weights: higher validation accuracy wins; on a tie, lower validation loss
        best = state.best_entry
        improved = best is None or (entry["val_accuracy"], -entry["val_loss"]) > (
            best["val_accuracy"],
            -best["val_loss"],
        )
        if improved:
            state.best_epoch = epoch
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if after_epoch is not None:
            after_epoch(state, improved)
        # log
        if progress:
            tqdm.write(
                f"epoch {epoch:3d}/{recipe.epochs} | train loss {entry['train_loss']:.4f} "
                f"acc {entry['train_accuracy']:.3f} | val loss {entry['val_loss']:.4f} "
                f"acc {entry['val_accuracy']:.3f} | lr {lr:.2e} | {entry['seconds']:.1f}s"
                + (" *best*" if improved else "")
            )

    # the end: the best epoch's weights, measured on the validation and test sets
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    final_val = evaluate(model, val_loader, **measure)
    test = evaluate(model, test_loader, **measure) if test_loader is not None else None
    rates = [entry["train_images_per_second"] for entry in state.history]
    return {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "val": final_val,
        "test": test,
        "train_images_per_second": sum(rates) / len(rates) if rates else None,
        "seconds": time.perf_counter() - start_time,
    }
