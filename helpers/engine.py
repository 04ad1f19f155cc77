"""Training and evaluation, kept apart from the model (like minGPT's ``trainer.py`` beside ``model.py``).

The pieces, in the order a lesson meets them:

    set_seed                -- one call makes a run repeatable
    warmup_cosine_schedule  -- linear warm-up, then cosine decay, stepped after every batch
    weight_decay_groups     -- AdamW groups: no weight decay on biases, norms, [class] token, positions
    train_one_epoch         -- forward, loss, backward, (clip), step, over one pass of the data
    predict_loader          -- class probabilities for a whole loader
    compute_metrics         -- accuracy, precision, recall, F1, AUROC, confusion matrix (torchmetrics)
    evaluate                -- loss + compute_metrics
    fit                     -- the whole recipe: epochs, best-on-validation weights, checkpoints, resume
    extract_features        -- run a frozen backbone once and keep the [class]-token features
    fit_linear_probe        -- train only the head, on those cached features

The training recipe follows the paper's fine-tuning setup where it matters on small data: AdamW
(decoupled weight decay), a short linear warm-up followed by cosine decay of the learning rate,
gradient clipping at norm 1, and label smoothing.

**Repeatable runs.** At the start of every epoch the random number generators (Python, NumPy,
PyTorch, and the train loader's own generator when it has one) are re-seeded from ``(seed, epoch)``.
The shuffle order, the data-augmentation draws and the dropout masks of epoch ``e`` therefore depend
only on ``seed`` and ``e``, which is what lets ``fit(resume=True)`` continue a killed run and finish
with exactly the numbers of a run that was never interrupted (on a CPU; GPU kernels may not be
bit-for-bit deterministic).

**Checkpoints.** With ``out_dir``, ``fit`` writes ``out_dir/checkpoint/`` after every epoch:
``model.safetensors`` (the current weights), ``best.safetensors`` (the best weights so far),
``state.pt`` (optimizer, learning-rate schedule and gradient-scaler state: plain tensors and
numbers, saved with ``torch.save`` and read back with ``torch.load(weights_only=True)``, which cannot
run code) and ``trainer.json`` (epoch, history, best epoch, settings), written last. Each file is
written under a temporary name and then renamed, so a run killed at any moment loses at most the
epoch it was in. Nothing is ever unpickled.

**Several GPUs.** ``fit`` also accepts a model wrapped in ``DistributedDataParallel`` and a train
loader with a ``DistributedSampler`` (see ``helpers/train.py``); the few lines that care are marked
"DDP". Every process evaluates the whole validation and test sets with identical weights, so all
processes agree on the metrics and the best epoch; only process 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from torchmetrics.functional import classification as tmc
from tqdm.auto import tqdm

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NO_WEIGHT_DECAY = ("class_token", "pos_embedding")  # parameter names (last part) that never decay
CHECKPOINT_FORMAT = "fake-vit-trainer/1"
TRAINER_FILE, STATE_FILE = "trainer.json", "state.pt"
MODEL_FILE, BEST_FILE = "model.safetensors", "best.safetensors"


# ---------------------------------------------------------------------------------------------
# Randomness and the learning-rate schedule
# ---------------------------------------------------------------------------------------------


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of epoch ``epoch`` (1-based) of a run seeded with ``seed``, in process ``rank``."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Multiply every group's learning rate by a factor that rises linearly for ``warmup_steps``
    steps (from 1/warmup_steps to 1), then follows half a cosine from 1 down to 0 at ``total_steps``.

    Call ``scheduler.step()`` after every ``optimizer.step()`` (per batch, not per epoch).
    """
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, "
            f"got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 -> 1
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)


def weight_decay_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr: float | None = None
) -> list[dict[str, Any]]:
    """Split trainable parameters into AdamW groups with and without weight decay.

    Weight decay pulls weights towards zero. That makes sense for the matrices of linear and
    convolution layers, not for biases, LayerNorm scales and shifts (1-D tensors), the [class]
    token or the position embeddings, which get ``weight_decay=0``. Frozen parameters
    (``requires_grad=False``) are left out. ``lr``, when given, is set on both groups.
    """
    decay, no_decay = [], []
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if lr is not None:
        for group in groups:
            group["lr"] = lr
    return [g for g in groups if g["params"]]


def _autocast(device: torch.device, precision: str):
    """A context in which the forward pass runs in ``precision`` ("fp32", "bf16" or "fp16")."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA GPU (device is {device}); use 'bf16' or 'fp32'.")
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def _progress_bar(loader: Iterable, description: str, enabled: bool) -> tqdm:
    """A progress bar over ``len(loader)`` batches, advanced by hand with ``bar.update()``.

    The bar is not wrapped around the loader on purpose: ``tqdm.auto`` calls ``iter(loader)`` once
    more when it wraps one, which would start a second pass over a DataLoader (drawing from its
    random generator and, with workers, starting them twice).
    """
    return tqdm(total=len(loader), desc=description, disable=not enabled, leave=False)


def _unwrap(model: nn.Module) -> nn.Module:
    """DDP: the model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _rank() -> int:
    """DDP: this process's number, 0 when not running distributed."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _sum_over_processes(values: torch.Tensor) -> torch.Tensor:
    """DDP: add ``values`` up over all processes (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


# ---------------------------------------------------------------------------------------------
# One epoch of training, prediction and metrics
# ---------------------------------------------------------------------------------------------


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    precision: str = "fp32",
    grad_clip: float | None = None,
    progress: bool = True,
    scaler: torch.amp.GradScaler | None = None,
    description: str = "train",
) -> dict[str, float]:
    """One pass over ``loader``: forward, loss, backward, optional gradient clipping, optimizer step,
    and ``scheduler.step()`` after every batch.

    With ``precision="fp16"`` the loss is scaled by ``scaler`` (a new ``GradScaler`` if None) so that
    small gradients do not underflow. Returns the mean loss and the accuracy over the images seen,
    plus ``images`` and ``seconds`` (under DDP: summed over all processes).
    """
    device = torch.device(device)
    model.train()
    if precision == "fp16" and scaler is None:
        scaler = torch.amp.GradScaler(device.type)
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    bar = _progress_bar(loader, description, progress)
    for step, (images, labels) in enumerate(loader):
        images = images.to(device, non_blocking=True)  # (B, C, H, W), or (B, D) cached features
        labels = labels.to(device, non_blocking=True)  # (B,)
        with _autocast(device, precision):
            logits = model(images)  # (B, num_classes)
            loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().double() * len(labels)
        correct += (logits.detach().argmax(dim=1) == labels).sum()
        seen += len(labels)
        bar.update()
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    totals = _sum_over_processes(
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


@torch.inference_mode()
def _predict_logits(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) as float32 on the CPU and targets (N,) for every sample of ``loader``."""
    device = torch.device(device)
    model.eval()
    all_logits, all_targets = [], []
    bar = _progress_bar(loader, "eval", progress)
    for images, labels in loader:
        with _autocast(device, precision):
            logits = model(images.to(device, non_blocking=True))  # (B, C)
        all_logits.append(logits.float().cpu())
        all_targets.append(labels.cpu())
        bar.update()
    bar.close()
    if not all_logits:
        raise ValueError("the loader produced no batches; is this split empty?")
    return torch.cat(all_logits), torch.cat(all_targets).long()


def predict_loader(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, C) as float32 on the CPU and targets (N,) for every sample of ``loader``.

    The model is put in eval mode (no dropout) and run under ``torch.inference_mode()``.
    """
    logits, targets = _predict_logits(model, loader, device, precision, progress)
    return logits.softmax(dim=1), targets


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, positive_class: int = 0) -> dict[str, Any]:
    """Classification metrics from probabilities (N, C) and true labels (N,), with torchmetrics.

    The predicted class is the most probable one. Returned values are plain Python numbers, rates
    in [0, 1] (not percent):

    - ``accuracy``: fraction of samples whose predicted class is the true class.
    - ``precision``, ``recall``, ``f1``, ``auroc``: with 2 classes, for the *positive* class
      ``positive_class``. It defaults to 0 because in this course class 0 is ``fake_images``
      (``helpers.data.CLASS_NAMES``) and the detector's job is to find fakes: precision = of the
      images called fake, the fraction that are fake; recall = of the fake images, the fraction
      caught. AUROC ranks the samples by the probability of the positive class; it is ``None``
      when the targets hold only one class (undefined). With more than 2 classes, all four are
      macro averages over the classes (one-vs-rest), and ``positive_class`` is ignored.
    - ``confusion_matrix``: ``C x C`` list of lists of counts, rows = true class, columns =
      predicted class, in class-index order (row 0 = class 0), whatever ``positive_class`` is.
    - ``num_samples``: N.
    """
    if probs.ndim != 2 or targets.ndim != 1 or len(probs) != len(targets):
        raise ValueError(
            f"expected probs (N, C) and targets (N,), got {tuple(probs.shape)} and {tuple(targets.shape)}"
        )
    num_classes = probs.shape[1]
    probs, targets = probs.float().cpu(), targets.long().cpu()
    preds = probs.argmax(dim=1)  # (N,)
    metrics: dict[str, Any] = {
        "accuracy": tmc.multiclass_accuracy(preds, targets, num_classes, average="micro").item(),
    }
    one_class_only = targets.unique().numel() < 2
    if num_classes == 2:
        if positive_class not in (0, 1):
            raise ValueError(f"positive_class must be 0 or 1 for 2 classes, got {positive_class}")
        is_pos_pred, is_pos = (preds == positive_class).long(), (targets == positive_class).long()
        metrics["precision"] = tmc.binary_precision(is_pos_pred, is_pos).item()
        metrics["recall"] = tmc.binary_recall(is_pos_pred, is_pos).item()
        metrics["f1"] = tmc.binary_f1_score(is_pos_pred, is_pos).item()
        metrics["auroc"] = (
            None if one_class_only else tmc.binary_auroc(probs[:, positive_class], is_pos).item()
        )
        metrics["positive_class"] = positive_class
    else:
        metrics["precision"] = tmc.multiclass_precision(preds, targets, num_classes, average="macro").item()
        metrics["recall"] = tmc.multiclass_recall(preds, targets, num_classes, average="macro").item()
        metrics["f1"] = tmc.multiclass_f1_score(preds, targets, num_classes, average="macro").item()
        metrics["auroc"] = (
            None if one_class_only else tmc.multiclass_auroc(probs, targets, num_classes).item()
        )
    metrics["confusion_matrix"] = tmc.multiclass_confusion_matrix(preds, targets, num_classes).tolist()
    metrics["num_samples"] = len(targets)
    return metrics


def evaluate(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    loss_fn: nn.Module | None = None,
    precision: str = "fp32",
    positive_class: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """``{"loss": ..., **compute_metrics(...)}`` over the whole loader.

    ``loss`` is ``loss_fn`` (plain cross-entropy when None, i.e. without label smoothing) averaged
    over all samples.
    """
    logits, targets = _predict_logits(model, loader, device, precision, progress)
    loss = (loss_fn or F.cross_entropy)(logits, targets).item()
    return {"loss": loss, **compute_metrics(logits.softmax(dim=1), targets, positive_class)}


# ---------------------------------------------------------------------------------------------
# Checkpoints: safetensors for weights, weights_only torch.save for optimizer state, JSON for the rest
# ---------------------------------------------------------------------------------------------


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path`` (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_weights(state_dict: dict[str, torch.Tensor], path: Path, epoch: int) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"epoch": str(epoch)}))


def _load_weights(path: Path, expected_epoch: int) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        epoch = (f.metadata() or {}).get("epoch")
    if epoch != str(expected_epoch):
        raise RuntimeError(
            f"{path} holds epoch {epoch} but {path.parent / TRAINER_FILE} expects epoch {expected_epoch}: the run "
            f"was stopped while it wrote its checkpoint. Delete {path.parent} and start again without resume."
        )
    return load_file(path)


def save_checkpoint(
    folder: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LambdaLR,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    history: list[dict[str, Any]],
    best_epoch: int,
    best_state: dict[str, torch.Tensor] | None,
    config: dict[str, Any],
) -> None:
    """Write the checkpoint of a completed ``epoch`` into ``folder`` (see the module docstring).

    ``best_state`` is written to ``best.safetensors`` only when given (i.e. when it changed).
    ``trainer.json`` is written last: it says which epoch the other files belong to.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _save_weights(model.state_dict(), folder / MODEL_FILE, epoch)
    if best_state is not None:
        _save_weights(best_state, folder / BEST_FILE, best_epoch)
    state = {
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
    }
    _atomic_write(folder / STATE_FILE, lambda tmp: torch.save(state, tmp))
    trainer = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "best_epoch": best_epoch,
        "history": history,
        "config": config,
    }
    _atomic_write(
        folder / TRAINER_FILE, lambda tmp: tmp.write_text(json.dumps(trainer, indent=1), encoding="utf-8")
    )


def load_checkpoint(folder: Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; nothing is unpickled.

    Returns ``trainer.json``'s content plus ``"weights"``, ``"best_weights"`` (state dicts) and
    ``"state"`` (optimizer / scheduler / scaler state dicts). When ``config`` is given it must
    equal the saved one: resuming with other settings could not reproduce the run.
    """
    trainer_path = folder / TRAINER_FILE
    trainer = json.loads(trainer_path.read_text(encoding="utf-8"))
    if trainer.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(
            f"{trainer_path} has format {trainer.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
        )
    if config is not None and trainer["config"] != config:
        saved = trainer["config"]
        diffs = [
            f"{k}: saved {saved.get(k)!r}, now {config.get(k)!r}"
            for k in sorted(set(saved) | set(config))
            if saved.get(k) != config.get(k)
        ]
        raise ValueError(
            f"cannot resume from {folder}: the settings differ ({'; '.join(diffs)}). Resume with the "
            f"same settings, or start a new run without resume (or with another output folder)."
        )
    epoch = trainer["epoch"]
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    if state["epoch"] != epoch:
        raise RuntimeError(
            f"{folder / STATE_FILE} holds epoch {state['epoch']} but {trainer_path} says {epoch}; "
            f"delete {folder} and start again without resume."
        )
    trainer["weights"] = _load_weights(folder / MODEL_FILE, epoch)
    trainer["best_weights"] = _load_weights(folder / BEST_FILE, trainer["best_epoch"])
    trainer["state"] = state
    return trainer


# ---------------------------------------------------------------------------------------------
# fit: the whole training run
# ---------------------------------------------------------------------------------------------


def _seed_epoch(loader: Iterable, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s shuffle order, augmentation and dropout depend only on (seed, epoch)."""
    s = epoch_seed(seed, epoch, _rank())
    set_seed(s)
    generator = getattr(loader, "generator", None)
    if generator is not None:  # the loader's own generator orders its shuffle and seeds its workers
        generator.manual_seed(s)
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):  # DDP: the sampler shuffles with (its seed, epoch)
        sampler.set_epoch(epoch)


def _is_better(val: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Higher validation accuracy wins; on a tie, lower validation loss."""
    if best is None:
        return True
    return (val["accuracy"], -val["loss"]) > (best["val_accuracy"], -best["val_loss"])


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: Iterable,
    *,
    epochs: int,
    lr: float,
    device: torch.device | str,
    test_loader: Iterable | None = None,
    weight_decay: float = 0.05,
    warmup_epochs: float = 0,
    label_smoothing: float = 0.0,
    grad_clip: float | None = None,
    precision: str = "fp32",
    seed: int = 42,
    out_dir: str | Path | None = None,
    resume: bool = False,
    param_groups: list[dict[str, Any]] | None = None,
    progress: bool = True,
    positive_class: int = 0,
) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs with AdamW and a warm-up + cosine schedule.

    After every epoch the model is evaluated on ``val_loader``; the weights of the best epoch
    (highest validation accuracy, ties broken by lower validation loss) are kept, put back into
    the model at the end, and used for the final ``val`` and ``test`` metrics.

    ``param_groups`` (e.g. a lower learning rate for a pretrained backbone) replaces the default
    :func:`weight_decay_groups` of all trainable parameters; groups without ``lr`` use ``lr``.
    ``warmup_epochs`` may be a fraction. With ``out_dir`` a checkpoint is written after every epoch
    to ``out_dir/checkpoint``; ``resume=True`` continues from it (or starts afresh when there is
    none) and ends with the same result as an uninterrupted run.

    Returns ``{"history": [one dict of plain floats per epoch], "best_epoch": int,
    "val": evaluate(...), "test": evaluate(...) or None, "train_images_per_second": float,
    "seconds": float}``.
    """
    device = torch.device(device)
    net = _unwrap(model)  # DDP: optimizer, checkpoints and evaluation use the plain model
    net.to(device)
    start_time = time.perf_counter()
    if param_groups is None:
        param_groups = weight_decay_groups(net.named_parameters(), weight_decay)
    if not param_groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    optimizer = torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(train_loader)
    scheduler = warmup_cosine_schedule(
        optimizer, round(warmup_epochs * steps_per_epoch), epochs * steps_per_epoch
    )
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    # Everything that shapes the run: resuming with other values could not reproduce it.
    config = {
        "epochs": epochs,
        "lr": lr,
        "weight_decay": weight_decay,
        "warmup_epochs": warmup_epochs,
        "label_smoothing": label_smoothing,
        "grad_clip": grad_clip,
        "precision": precision,
        "seed": seed,
        "steps_per_epoch": steps_per_epoch,
        "group_lrs": [g["initial_lr"] for g in optimizer.param_groups],
    }
    folder = Path(out_dir) / "checkpoint" if out_dir is not None else None
    writes = folder is not None and _rank() == 0  # DDP: only process 0 writes files

    history: list[dict[str, Any]] = []
    best_epoch, best_entry, best_state = 0, None, None
    first_epoch = 1
    if resume and folder is not None and (folder / TRAINER_FILE).is_file():
        saved = load_checkpoint(folder, config)
        net.load_state_dict(saved["weights"])
        optimizer.load_state_dict(saved["state"]["optimizer"])
        scheduler.load_state_dict(saved["state"]["scheduler"])
        if scaler is not None:
            scaler.load_state_dict(saved["state"]["scaler"])
        history, best_epoch, best_state = saved["history"], saved["best_epoch"], saved["best_weights"]
        best_entry = history[best_epoch - 1]
        first_epoch = saved["epoch"] + 1
        if getattr(train_loader, "persistent_workers", False) and getattr(train_loader, "num_workers", 0) > 0:
            warnings.warn(
                "the train loader keeps its worker processes (persistent_workers=True), whose random state "
                "cannot be re-seeded per epoch: the resumed run shuffles in the same order but draws other "
                "augmentations than an uninterrupted run. Use persistent_workers=False for an exact resume.",
                stacklevel=2,
            )
        if progress:
            tqdm.write(f"Resuming from {folder} after epoch {saved['epoch']} of {epochs}.")
    elif resume and progress:
        tqdm.write(f"No checkpoint in {folder}; starting from epoch 1.")

    for epoch in range(first_epoch, epochs + 1):
        epoch_start = time.perf_counter()
        _seed_epoch(train_loader, seed, epoch)
        train = train_one_epoch(
            model,
            train_loader,
            optimizer,
            loss_fn,
            device,
            scheduler,
            precision,
            grad_clip,
            progress,
            scaler,
            description=f"epoch {epoch}/{epochs}",
        )
        val = evaluate(net, val_loader, device, precision=precision, positive_class=positive_class)
        entry = {
            "epoch": epoch,
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_precision": val["precision"],
            "val_recall": val["recall"],
            "val_f1": val["f1"],
            "val_auroc": val["auroc"],
            "lr": max(g["lr"] for g in optimizer.param_groups),  # after the epoch's last step
            "train_images_per_second": train["images"] / train["seconds"],
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(entry)
        improved = _is_better(val, best_entry)
        if improved:
            best_epoch, best_entry = epoch, entry
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        if writes:
            save_checkpoint(
                folder,
                model=net,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                epoch=epoch,
                history=history,
                best_epoch=best_epoch,
                best_state=best_state if improved else None,
                config=config,
            )
        if progress:
            tqdm.write(
                f"epoch {epoch:3d}/{epochs} | train loss {entry['train_loss']:.4f} acc {entry['train_accuracy']:.3f} "
                f"| val loss {entry['val_loss']:.4f} acc {entry['val_accuracy']:.3f} | lr {entry['lr']:.2e} "
                f"| {entry['seconds']:.1f}s" + (" *best*" if improved else "")
            )

    if best_state is not None:
        net.load_state_dict(best_state)
    final_val = evaluate(net, val_loader, device, precision=precision, positive_class=positive_class)
    test = None
    if test_loader is not None:
        test = evaluate(net, test_loader, device, precision=precision, positive_class=positive_class)
    rates = [h["train_images_per_second"] for h in history]
    return {
        "history": history,
        "best_epoch": best_epoch,
        "val": final_val,
        "test": test,
        "train_images_per_second": sum(rates) / len(rates) if rates else None,
        "seconds": time.perf_counter() - start_time,
    }


# ---------------------------------------------------------------------------------------------
# Linear probe on cached features
# ---------------------------------------------------------------------------------------------


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the (frozen) backbone once: ``model.forward_features`` for every image of ``loader``.

    Returns the [class]-token features (N, D) as float32 on the CPU, and the targets (N,).
    """
    device = torch.device(device)
    model.eval()
    features, targets = [], []
    bar = _progress_bar(loader, "features", progress)
    for images, labels in loader:
        with _autocast(device, precision):
            feats = model.forward_features(images.to(device, non_blocking=True))  # (B, D)
        features.append(feats.float().cpu())
        targets.append(labels.cpu())
        bar.update()
    bar.close()
    if not features:
        raise ValueError("the loader produced no batches; is this split empty?")
    return torch.cat(features), torch.cat(targets).long()


def _feature_loader(
    features: torch.Tensor, targets: torch.Tensor, batch_size: int, shuffle: bool
) -> DataLoader:
    generator = torch.Generator() if shuffle else None  # re-seeded every epoch by fit
    return DataLoader(
        TensorDataset(features, targets), batch_size=batch_size, shuffle=shuffle, generator=generator
    )


def fit_linear_probe(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    epochs: int,
    lr: float,
    device: torch.device | str,
    test_loader: DataLoader | None = None,
    weight_decay: float = 0.0,
    warmup_epochs: float = 0,
    label_smoothing: float = 0.0,
    grad_clip: float | None = None,
    precision: str = "fp32",
    seed: int = 42,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    positive_class: int = 0,
) -> dict[str, Any]:
    """Linear probe: freeze the backbone, train only ``model.head``, fast.

    A frozen backbone gives the same features for an image in every epoch, so there is no need to
    run it every epoch: the features of every train, validation and test image are computed once
    (:func:`extract_features`), and the head (a single ``nn.Linear``) is trained on them with
    :func:`fit`. The head is trained in place, so ``model`` ends up as the full classifier with the
    best-on-validation head. Random augmentation would be frozen into the cached features: give this
    function loaders with the evaluation transform.

    Returns the same dict as :func:`fit` (history, best_epoch, val, test, ...), plus
    ``"feature_seconds"``, the time spent extracting features; ``seconds`` and
    ``train_images_per_second`` count the whole probe, feature extraction included.
    """
    device = torch.device(device)
    model.to(device)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    start = time.perf_counter()
    # Features in dataset order (the train loader would shuffle them): row i belongs to image i.
    in_order = DataLoader(
        train_loader.dataset,
        batch_size=train_loader.batch_size or 32,
        shuffle=False,
        num_workers=train_loader.num_workers,
        collate_fn=train_loader.collate_fn,
    )
    train_x, train_y = extract_features(model, in_order, device, precision, progress)  # (N, D), (N,)
    val_x, val_y = extract_features(model, val_loader, device, precision, progress)
    test_x, test_y = (
        extract_features(model, test_loader, device, precision, progress) if test_loader else (None, None)
    )
    feature_seconds = time.perf_counter() - start

    batch = train_loader.batch_size or 32
    result = fit(
        model.head,
        _feature_loader(train_x, train_y, batch, shuffle=True),
        _feature_loader(val_x, val_y, val_loader.batch_size or batch, shuffle=False),
        test_loader=_feature_loader(test_x, test_y, batch, shuffle=False) if test_loader else None,
        epochs=epochs,
        lr=lr,
        device=device,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        grad_clip=grad_clip,
        precision="fp32",
        seed=seed,
        out_dir=out_dir,
        resume=resume,
        progress=progress,
        positive_class=positive_class,
    )
    result["feature_seconds"] = feature_seconds
    result["seconds"] += feature_seconds
    # Training images per second of the whole probe, the one pass through the backbone included.
    result["train_images_per_second"] = len(train_x) * epochs / result["seconds"]
    return result
