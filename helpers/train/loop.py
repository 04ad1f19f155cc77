"""Training, kept apart from the model (like minGPT's ``trainer.py`` beside ``model.py``).

The pieces, in the order a lesson meets them:

    set_seed          -- one call makes a run repeatable (lesson 03)
    train_one_epoch   -- forward, loss, backward, clip, step, over one pass of the data (lesson 03)
    fit               -- a whole run of a recipe: epochs, best-on-validation weights, saved state, resume
    fit_linear_probe  -- train only the head of a frozen backbone, on features computed once (lesson 04)

*What* to train with (optimiser, learning rate, schedule, regularisation) is a
:class:`helpers.train.recipes.Recipe`; measuring the model after every epoch is :mod:`helpers.train.evaluation`;
the state saved after every epoch is :mod:`helpers.train.state`; the numeric format of the forward
pass (``precision``: "fp32", "bf16", "fp16"; ``"auto"`` is resolved by
:func:`helpers.train.precision.resolve_precision`) and the fp16 gradient scaler are :mod:`helpers.train.precision`.

**Repeatable runs.** At the start of every epoch the random number generators (Python, NumPy,
PyTorch, and the train loader's own generator when it has one) are re-seeded from ``(seed, epoch)``.
The shuffle order, the data-augmentation draws and the dropout masks of epoch ``e`` therefore depend
only on ``seed`` and ``e``, which is what lets ``fit(resume=True)`` continue a killed run and finish
with exactly the numbers of a run that was never interrupted (on a CPU; GPU kernels may not be
bit-for-bit deterministic).

**Several GPUs.** Under ``torchrun`` (see :mod:`helpers.train.distributed`) ``fit`` trains through a
``DistributedDataParallel`` wrapper, and the train loader has a ``DistributedSampler``; the few
lines that care are marked "DDP". Every process evaluates the whole validation and test sets with
identical weights, so all processes agree on the metrics and the best epoch; only process 0 writes
files.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm.auto import tqdm

from helpers.train import distributed
from helpers.train import state as training_state
from helpers.train.evaluation import evaluate, extract_features, progress_bar
from helpers.train.precision import autocast, make_scaler, resolve_precision
from helpers.train.recipes import Recipe, make_optimizer, make_schedule
from helpers.train.state import TrainingState

VAL_METRICS = ("loss", "accuracy", "precision", "recall", "f1", "auroc")  # kept per epoch, as val_*


# ---------------------------------------------------------------------------------------------
# Randomness
# ---------------------------------------------------------------------------------------------


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) with ``seed``. Lessons 03 to 06."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of epoch ``epoch`` (1-based) of a run seeded with ``seed``, in process ``rank``.

    Lesson 03 (repeatable runs).
    """
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


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
    accuracy over the images seen, plus ``images`` and ``seconds`` (under DDP: summed over all
    processes).
    """
    device = torch.device(device)
    scaler = make_scaler(device, precision) if scaler is None else scaler
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
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
    totals = distributed.sum_over_processes(
        torch.stack([loss_sum, correct.double(), torch.tensor(seen, device=device).double()])
    )
    loss_total, correct_total, seen_total = totals.tolist()
    if seen_total == 0:
        raise ValueError("the train loader produced no batches; is the training split empty?")
    return {
        "loss": loss_total / seen_total,
        "accuracy": correct_total / seen_total,
        "images": int(seen_total),
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------------------------
# fit: a whole run of a recipe
# ---------------------------------------------------------------------------------------------


def _set_up(
    model: nn.Module,
    train_loader: Iterable,
    recipe: Recipe,
    *,
    device: torch.device,
    precision: str,
    seed: int,
) -> TrainingState:
    """Optimizer, learning-rate schedule and gradient scaler, as ``recipe`` says."""
    steps_per_epoch = len(train_loader)
    optimizer = make_optimizer(model, recipe)
    return TrainingState(
        optimizer=optimizer,
        scheduler=make_schedule(optimizer, recipe, steps_per_epoch),
        scaler=make_scaler(device, precision),
        settings={
            "recipe": recipe.to_dict(),
            "seed": seed,
            "precision": precision,
            "steps_per_epoch": steps_per_epoch,
        },
    )


def _seed_epoch(loader: Iterable, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s shuffle order, augmentation and dropout depend only on (seed, epoch)."""
    s = epoch_seed(seed, epoch, distributed.current_rank())
    set_seed(s)
    generator = getattr(loader, "generator", None)
    if generator is not None:  # the loader's own generator orders its shuffle and seeds its workers
        generator.manual_seed(s)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):  # DDP: the sampler shuffles with (its seed, epoch)
        sampler.set_epoch(epoch)


def repeatable_train_loader(
    loader: DataLoader, seed: int, sampler: DistributedSampler | None = None
) -> DataLoader:
    """The train loader, rebuilt so that every epoch's randomness can be re-seeded by :func:`fit`.

    Persistent workers would carry their random state from one epoch to the next; new workers per
    epoch take their seeds from the loader's generator, which ``fit`` re-seeds from (seed, epoch),
    so a resumed run repeats the same augmentation. Under DDP the ``sampler`` shards and shuffles.
    Used by ``python -m helpers.train``; lesson 03 explains repeatable runs.
    """
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
        num_workers=loader.num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def _history_entry(epoch: int, train: dict, val: dict, *, lr: float, seconds: float) -> dict[str, Any]:
    """One epoch of the history: plain numbers, the validation metrics prefixed with ``val_``."""
    return {
        "epoch": epoch,
        **{f"train_{key}": train[key] for key in ("loss", "accuracy")},
        **{f"val_{key}": val[key] for key in VAL_METRICS},
        "lr": lr,  # after the epoch's last step
        "train_images_per_second": train["images"] / train["seconds"],
        "seconds": seconds,
    }


def _is_better(entry: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Higher validation accuracy wins; on a tie, lower validation loss."""
    if best is None:
        return True
    return (entry["val_accuracy"], -entry["val_loss"]) > (best["val_accuracy"], -best["val_loss"])


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: Iterable,
    recipe: Recipe,
    *,
    device: torch.device | str,
    test_loader: Iterable | None = None,
    precision: str = "fp32",
    seed: int = 42,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    positive_class: int = 0,
) -> dict[str, Any]:
    """Train ``model`` for ``recipe.epochs`` epochs as ``recipe`` says (lessons 03 to 06).

    After every epoch the model is evaluated on ``val_loader``; the weights of the best epoch
    (highest validation accuracy, ties broken by lower validation loss) are kept, put back into
    the model at the end, and used for the final ``val`` and ``test`` metrics. ``precision`` is the
    numeric format of the forward passes ("auto": :func:`helpers.train.precision.resolve_precision`). With
    ``out_dir`` the training state is saved after every epoch to ``out_dir/training_state``;
    ``resume=True`` continues from it (or starts afresh when there is none) and ends with the same
    result as an uninterrupted run.

    Returns ``{"history": [one dict of plain numbers per epoch], "best_epoch": int,
    "val": evaluate(...), "test": evaluate(...) or None, "train_images_per_second": float,
    "seconds": float}``.
    """
    start_time = time.perf_counter()
    device = torch.device(device)
    precision = resolve_precision(precision, device)  # "auto" -> what this device runs fastest
    model.to(device)
    # DDP: the training step goes through the wrapper; evaluation and saving use `model` itself.
    ddp_model = distributed.wrap_model(model, device)
    state = _set_up(model, train_loader, recipe, device=device, precision=precision, seed=seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    folder = Path(out_dir) / training_state.FOLDER if out_dir is not None else None
    if resume:
        if folder is None:
            raise ValueError("resume=True needs the out_dir of the run to continue")
        done = training_state.resume(folder, model=model, state=state, train_loader=train_loader)
        if progress:
            where = f"after epoch {done} of {recipe.epochs}" if done else "at epoch 1: nothing saved yet"
            tqdm.write(f"Resuming from {folder} {where}.")
    measure = {"device": device, "precision": precision, "positive_class": positive_class}

    for epoch in range(len(state.history) + 1, recipe.epochs + 1):
        epoch_start = time.perf_counter()
        # seed the epoch: its shuffle order, augmentations and dropout depend only on (seed, epoch)
        _seed_epoch(train_loader, seed, epoch)
        # train
        train = train_one_epoch(
            ddp_model,
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
        entry = _history_entry(epoch, train, val, lr=lr, seconds=time.perf_counter() - epoch_start)
        state.history.append(entry)
        # keep the best weights
        improved = _is_better(entry, state.best_entry)
        if improved:
            state.best_epoch = epoch
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        # save the training state (DDP: process 0 only)
        if folder is not None and distributed.current_rank() == 0:
            training_state.save_training_state(folder, model=model, state=state, new_best=improved)
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


# ---------------------------------------------------------------------------------------------
# Linear probe on cached features
# ---------------------------------------------------------------------------------------------


def _feature_loader(
    features: torch.Tensor, targets: torch.Tensor, batch_size: int, shuffle: bool, pin_memory: bool = False
) -> DataLoader:
    generator = torch.Generator() if shuffle else None  # re-seeded every epoch by fit
    dataset = TensorDataset(features, targets)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, pin_memory=pin_memory
    )


def fit_linear_probe(
    model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, recipe: Recipe, **options: Any
) -> dict[str, Any]:
    """Linear probe: freeze the backbone, train only ``model.head``, fast (lesson 04).

    A frozen backbone gives the same features for an image in every epoch, so there is no need to
    run it every epoch: the features of every train, validation and test image are computed once
    (:func:`helpers.train.evaluation.extract_features`), and the head (a single ``nn.Linear``) is trained
    on them by :func:`fit` with ``recipe``. ``options`` are :func:`fit`'s keywords (``device``,
    ``test_loader``, ``precision``, ``seed``, ...); ``precision`` applies to the features, the head
    trains in fp32. The head is trained in place, so ``model`` ends up as the full classifier with
    the best-on-validation head. Random augmentation would be frozen into the cached features: give
    this function loaders with the evaluation transform.

    Returns the same dict as :func:`fit` (history, best_epoch, val, test, ...), plus
    ``"feature_seconds"``, the time spent extracting features; ``seconds`` and
    ``train_images_per_second`` count the whole probe, feature extraction included.
    """
    device, test_loader = torch.device(options.pop("device")), options.pop("test_loader", None)
    extract = {
        "device": device,
        "precision": options.pop("precision", "fp32"),
        "progress": options.get("progress", True),
    }
    model.to(device)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    start = time.perf_counter()
    # Features in dataset order (the train loader would shuffle them): row i belongs to image i.
    batch_size = train_loader.batch_size or 32
    in_order = DataLoader(
        train_loader.dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=train_loader.num_workers,
        collate_fn=train_loader.collate_fn,
        pin_memory=train_loader.pin_memory,
    )
    train_x, train_y = extract_features(model, in_order, **extract)  # (N, D), (N,)
    val_x, val_y = extract_features(model, val_loader, **extract)
    test_features = extract_features(model, test_loader, **extract) if test_loader is not None else None
    feature_seconds = time.perf_counter() - start

    pin = device.type == "cuda"  # page-locked features copy to the GPU faster
    result = fit(
        model.head,
        _feature_loader(train_x, train_y, batch_size, shuffle=True, pin_memory=pin),
        _feature_loader(val_x, val_y, val_loader.batch_size or batch_size, shuffle=False, pin_memory=pin),
        recipe,
        device=device,
        test_loader=_feature_loader(*test_features, batch_size, False, pin) if test_features else None,
        precision="fp32",  # a linear layer on cached features gains nothing from half precision
        **options,
    )
    result["feature_seconds"] = feature_seconds
    result["seconds"] += feature_seconds
    # Training images per second of the whole probe, the one pass through the backbone included.
    result["train_images_per_second"] = len(train_x) * recipe.epochs / result["seconds"]
    return result
