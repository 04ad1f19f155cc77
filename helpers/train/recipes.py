"""The training recipe as data (lessons 03, 04): notebooks, the command line and benchmarks take their
numbers from :data:`RECIPES`, and the optimiser and learning-rate schedule a recipe asks for.

    scratch       -- a tiny ViT from random weights on a small dataset (lesson 03)
    tutorial      -- the source tutorial's settings, which stay at chance on small data (lesson 03)
    linear_probe  -- frozen ImageNet ViT-B/16, only the new head learns (lesson 04)
    finetune      -- every layer of the ImageNet ViT-B/16, the backbone ten times slower (lesson 04)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("warmup_cosine", "constant")
NO_WEIGHT_DECAY = ("class_token", "pos_embedding")  # parameter names (last part) that never decay


@dataclass(frozen=True)
class Recipe:
    """How to train a model; :data:`RECIPES` holds the named ones. Lessons 03 and 04."""

    name: str  # "scratch", "linear_probe", "finetune", "tutorial", or a name of your own
    epochs: int  # passes over the training set
    batch_size: int  # images per optimiser step (per process under torchrun)
    lr: float  # peak learning rate (the head's when backbone_lr_scale != 1)
    weight_decay: float  # pull towards zero; with AdamW only on weight matrices (see param_groups)
    warmup_epochs: float  # linear warm-up of the learning rate, in epochs; may be a fraction
    label_smoothing: float  # share of the target probability spread over all classes (0 = off)
    grad_clip: float | None  # largest gradient norm allowed before a step (None = no clipping)
    backbone_lr_scale: float = 1.0  # everything but the head learns at lr x this (finetune: 0.1)
    train_backbone: bool = True  # False = linear probe: frozen backbone, its features computed once
    pretrained: bool = False  # start from torchvision's ImageNet ViT-B/16 weights (else random)
    optimizer: str = "adamw"  # "adamw" (decoupled decay) | "adam" (coupled, the source tutorial's)
    schedule: str = "warmup_cosine"  # "warmup_cosine" | "constant" (the source tutorial's)

    def __post_init__(self) -> None:
        """Refuse impossible values with an error naming the field."""
        checks = [
            ("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            (
                "warmup_epochs",
                0 <= self.warmup_epochs <= self.epochs,
                f"between 0 and epochs ({self.epochs})",
            ),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "None (off) or > 0"),
            ("backbone_lr_scale", self.backbone_lr_scale > 0, "> 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("schedule", self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
        ]
        for field, ok, wanted in checks:
            if not ok:
                value = getattr(self, field)
                raise ValueError(f"recipe {self.name!r}: {field} must be {wanted}, got {value!r}")
        if self.schedule == "constant" and self.warmup_epochs:
            raise ValueError(
                f"recipe {self.name!r}: warmup_epochs must be 0 with schedule='constant', "
                f"got {self.warmup_epochs}; use schedule='warmup_cosine' for a warm-up"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, as saved with a run."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The recipe saved by :meth:`to_dict` (checked again)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; the fields are {sorted(known)}")
        return cls(**values)


# The recipes' numbers, written once. "scratch": vit_tiny on the toy set, >= 90 % test accuracy in a few CPU
# minutes. A lone linear head gets Adam's usual 1e-3; fine-tuning, 3e-4 for the head and a tenth for the
# backbone (DeiT's 5e-4 x batch / 512 at 32). "tutorial": the source tutorial's Adam, constant rate.
RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe("scratch", epochs=10, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=1,
               label_smoothing=0.1, grad_clip=1.0),
        Recipe("linear_probe", epochs=10, batch_size=32, lr=1e-3, weight_decay=0.0, warmup_epochs=0,
               label_smoothing=0.0, grad_clip=None, train_backbone=False, pretrained=True),
        Recipe("finetune", epochs=3, batch_size=32, lr=3e-4, weight_decay=0.05, warmup_epochs=0.5,
               label_smoothing=0.1, grad_clip=1.0, backbone_lr_scale=0.1, pretrained=True),
        Recipe("tutorial", epochs=3, batch_size=32, lr=1e-3, weight_decay=0.1, warmup_epochs=0,
               label_smoothing=0.0, grad_clip=None, optimizer="adam", schedule="constant"),
    )
}  # fmt: skip


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The named recipe with some fields replaced: ``get_recipe("scratch", epochs=4)``. Lessons 03 to 06."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; the recipes are {sorted(RECIPES)}")
    return Recipe.from_dict({**RECIPES[name].to_dict(), **overrides})


def weight_decay_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float, lr: float | None = None
) -> list[dict[str, Any]]:
    """AdamW groups with and without weight decay (none for 1-D biases and norms, the [class] token, the
    position embeddings), frozen parameters left out; ``lr``, when given, set on both. Lesson 03."""
    decay, no_decay = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            no = p.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY
            (no_decay if no else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if lr is not None:
        for group in groups:
            group["lr"] = lr
    return [g for g in groups if g["params"]]


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: Adam, one group; AdamW, :func:`weight_decay_groups`, the backbone
    at ``lr * backbone_lr_scale`` and the head (``head.*``) at ``lr``. Lessons 03 and 04."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        return [{"params": [p for _, p in trainable]}] if trainable else []
    if recipe.backbone_lr_scale == 1:
        return weight_decay_groups(trainable, recipe.weight_decay)
    head = [(name, p) for name, p in trainable if name.startswith("head.")]
    backbone = [(name, p) for name, p in trainable if not name.startswith("head.")]
    slow = weight_decay_groups(backbone, recipe.weight_decay, recipe.lr * recipe.backbone_lr_scale)
    return slow + weight_decay_groups(head, recipe.weight_decay, recipe.lr)


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) or Adam (decay added to the gradient), as lesson 03 compares."""
    groups = param_groups(model, recipe)
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    optimizer = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    # fused: one kernel updates every weight (CPU, CUDA); the same update, several times faster on a CPU
    fused = all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
    return optimizer(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=fused or None)


def warmup_cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Scale the learning rate up linearly for ``warmup_steps`` (1/warmup_steps to 1), then down half a
    cosine to 0 at ``total_steps``. Step it after every batch, not every epoch. Lesson 03."""
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps >= 1, got {warmup_steps} and {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 -> 1
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)


def make_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int) -> LambdaLR:
    """The recipe's schedule over ``recipe.epochs * steps_per_epoch`` steps. Lesson 03."""
    if recipe.schedule == "constant":
        return LambdaLR(optimizer, lambda step: 1.0)
    warmup_steps = round(recipe.warmup_epochs * steps_per_epoch)
    return warmup_cosine_schedule(optimizer, warmup_steps, recipe.epochs * steps_per_epoch)
