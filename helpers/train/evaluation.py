"""Measuring a model (eval mode, ``torch.inference_mode()``): predictions over a loader, classification
metrics, a frozen backbone's features. ``precision`` is the forward pass's number format."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional import classification as tmc
from tqdm.auto import tqdm

from helpers.data.transforms import normalise_batch
from helpers.train.precision import autocast


def progress_bar(loader: Iterable, description: str, enabled: bool) -> tqdm:
    """A bar over ``len(loader)`` batches, advanced by hand: wrapping a DataLoader iterates it twice."""
    return tqdm(total=len(loader), desc=description, disable=not enabled, leave=False)


@torch.inference_mode()
def _outputs(model: nn.Module, loader: Iterable, device, precision: str, progress: bool, features=False):
    """Logits (or ``forward_features``) (N, ...) as float32 on the CPU, and targets (N,)."""
    model.eval()
    device = torch.device(device)
    forward = model.forward_features if features else model
    outputs, targets = [], []
    bar = progress_bar(loader, "features" if features else "eval", progress)
    for images, labels in loader:
        with autocast(device, precision):
            images = normalise_batch(images.to(device, non_blocking=True))  # uint8 (image cache) -> floats
            outputs.append(forward(images).float().cpu())  # (B, ...)
        targets.append(labels.cpu())
        bar.update()
    bar.close()
    if not outputs:
        raise ValueError("the loader produced no batches; is this split empty?")
    return torch.cat(outputs), torch.cat(targets).long()


def predict_loader(model: nn.Module, loader: Iterable, device, *, precision="fp32", progress=False):
    """Class probabilities (N, C) as float32 on the CPU and targets (N,), in order. Lessons 03 to 06."""
    logits, targets = _outputs(model, loader, device, precision, progress)
    return logits.softmax(dim=1), targets


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, *, positive_class: int = 0) -> dict[str, Any]:
    """Metrics of probabilities (N, C) against labels (N,): with 2 classes for ``positive_class`` (0 = fake),
    else macro averages; ``auroc`` None for one class; ``confusion_matrix`` rows = true. Lessons 03 to 05."""
    if probs.ndim != 2 or targets.ndim != 1 or len(probs) != len(targets):
        raise ValueError(
            f"expected probs (N, C) and targets (N,), got {tuple(probs.shape)} and {tuple(targets.shape)}"
        )
    num_classes = probs.shape[1]
    probs, targets = probs.float().cpu(), targets.long().cpu()
    preds = probs.argmax(dim=1)  # (N,)
    metrics: dict[str, Any] = {
        "accuracy": tmc.multiclass_accuracy(preds, targets, num_classes, average="micro").item()
    }
    one_class_only = targets.unique().numel() < 2
    if num_classes == 2:
        if positive_class not in (0, 1):
            raise ValueError(f"positive_class must be 0 or 1 for 2 classes, got {positive_class}")
        is_pos_pred, is_pos = (preds == positive_class).long(), (targets == positive_class).long()
        metrics["precision"] = tmc.binary_precision(is_pos_pred, is_pos).item()
        metrics["recall"] = tmc.binary_recall(is_pos_pred, is_pos).item()
        metrics["f1"] = tmc.binary_f1_score(is_pos_pred, is_pos).item()
        auroc = None if one_class_only else tmc.binary_auroc(probs[:, positive_class], is_pos).item()
        metrics["auroc"] = auroc
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
    *,
    loss_fn: nn.Module | None = None,
    precision: str = "fp32",
    positive_class: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """``{"loss": ..., **compute_metrics(...)}`` over the loader (default loss: cross-entropy). Lesson 03."""
    logits, targets = _outputs(model, loader, device, precision, progress)
    loss = (loss_fn or F.cross_entropy)(logits, targets).item()
    return {"loss": loss, **compute_metrics(logits.softmax(dim=1), targets, positive_class=positive_class)}


def extract_features(model: nn.Module, loader: Iterable, device, *, precision="fp32", progress=False):
    """The frozen backbone run once: [class]-token features (N, D) on the CPU and targets (N,). Lesson 04."""
    return _outputs(model, loader, device, precision, progress, features=True)
