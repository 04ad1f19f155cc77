"""Measuring a model: predictions over a loader, classification metrics, cached features.

Used by :mod:`helpers.train.loop` after every epoch, and directly by the lessons: lesson 03 compares
two recipes on the test set, lesson 04 draws confusion matrices and ROC curves, lesson 05 looks
at the detector's mistakes. Nothing here changes a weight: every model is put in eval mode and run
under ``torch.inference_mode()``.

**Precision** means the numeric format of the forward pass here: ``"fp32"``, ``"bf16"`` or
``"fp16"`` (autocast, see :mod:`helpers.train.precision`). The classification metric of the same name is
a key of :func:`compute_metrics`' result, and ``val_precision`` in a training run's history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional import classification as tmc
from tqdm.auto import tqdm

from helpers.train.precision import autocast


def progress_bar(loader: Iterable, description: str, enabled: bool) -> tqdm:
    """A progress bar over ``len(loader)`` batches, advanced by hand with ``bar.update()``.

    The bar is not wrapped around the loader on purpose: ``tqdm.auto`` calls ``iter(loader)`` once
    more when it wraps one, which would start a second pass over a DataLoader (drawing from its
    random generator and, with workers, starting them twice).
    """
    return tqdm(total=len(loader), desc=description, disable=not enabled, leave=False)


@torch.inference_mode()
def _outputs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    device: torch.device,
    *,
    precision: str,
    progress: bool,
    description: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``forward(images)`` for every batch of ``loader``: the outputs (N, ...) as float32 on the CPU,
    and the targets (N,)."""
    outputs, targets = [], []
    bar = progress_bar(loader, description, progress)
    for images, labels in loader:
        with autocast(device, precision):
            outputs.append(forward(images.to(device, non_blocking=True)).float().cpu())  # (B, ...)
        targets.append(labels.cpu())
        bar.update()
    bar.close()
    if not outputs:
        raise ValueError("the loader produced no batches; is this split empty?")
    return torch.cat(outputs), torch.cat(targets).long()


def _predict_logits(
    model: nn.Module, loader: Iterable, device: torch.device | str, *, precision: str, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) as float32 on the CPU and targets (N,) for every sample of ``loader``."""
    model.eval()
    device = torch.device(device)
    return _outputs(model, loader, device, precision=precision, progress=progress, description="eval")


def predict_loader(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    *,
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, C) as float32 on the CPU and targets (N,) for every sample of ``loader``.

    The model is put in eval mode (no dropout) and run under ``torch.inference_mode()``. Lessons 03 to 06.
    """
    logits, targets = _predict_logits(model, loader, device, precision=precision, progress=progress)
    return logits.softmax(dim=1), targets


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, *, positive_class: int = 0) -> dict[str, Any]:
    """Classification metrics from probabilities (N, C) and true labels (N,), with torchmetrics.

    The predicted class is the most probable one. Returned values are plain Python numbers, rates
    in [0, 1] (not percent):

    - ``accuracy``: fraction of samples whose predicted class is the true class.
    - ``precision``, ``recall``, ``f1``, ``auroc``: with 2 classes, for the *positive* class
      ``positive_class``. It defaults to 0 because in this course class 0 is ``fake_images``
      (``helpers.data.datasets.CLASS_NAMES``) and the detector's job is to find fakes: precision = of the
      images called fake, the fraction that are fake; recall = of the fake images, the fraction
      caught. AUROC ranks the samples by the probability of the positive class; it is ``None``
      when the targets hold only one class (undefined). With more than 2 classes, all four are
      macro averages over the classes (one-vs-rest), and ``positive_class`` is ignored.
    - ``confusion_matrix``: ``C x C`` list of lists of counts, rows = true class, columns =
      predicted class, in class-index order (row 0 = class 0), whatever ``positive_class`` is.
    - ``num_samples``: N. Lessons 03 to 05.
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
    *,
    loss_fn: nn.Module | None = None,
    precision: str = "fp32",
    positive_class: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """``{"loss": ..., **compute_metrics(...)}`` over the whole loader.

    ``loss`` is ``loss_fn`` (plain cross-entropy when None, i.e. without label smoothing) averaged
    over all samples. Lesson 03.
    """
    logits, targets = _predict_logits(model, loader, device, precision=precision, progress=progress)
    loss = (loss_fn or F.cross_entropy)(logits, targets).item()
    return {"loss": loss, **compute_metrics(logits.softmax(dim=1), targets, positive_class=positive_class)}


@torch.inference_mode()
def extract_features(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    *,
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the (frozen) backbone once: ``model.forward_features`` for every image of ``loader``.

    Returns the [class]-token features (N, D) as float32 on the CPU, and the targets (N,). Lesson 04.
    """
    model.eval()
    device = torch.device(device)
    return _outputs(
        model.forward_features, loader, device, precision=precision, progress=progress, description="features"
    )
