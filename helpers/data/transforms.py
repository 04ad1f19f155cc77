"""Every image transform of the course (``torchvision.transforms.v2``): from scratch (lesson 03), fine-tuning
(04), a detector's stored eval transform (04, 06). PIL or uint8 (3, H, W) in, resized and cropped first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel mean of ImageNet, RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)  # per-channel standard deviation of ImageNet


def _to_normalised_tensor(mean, std) -> list[Callable]:
    """PIL image or uint8 (3, H, W) tensor -> float (3, H, W) tensor, standardised per channel."""
    return [
        T.ToImage(),  # (3, H, W) uint8; a tensor passes through unchanged
        T.ToDtype(torch.float32, scale=True),  # values in [0, 1]
        T.Normalize(list(mean), list(std)),
        T.ToPureTensor(),  # a plain torch.Tensor, as every model and loss expects
    ]


def eval_transform_spec(image_size: int, pretrained: bool) -> dict[str, Any]:
    """The JSON-able eval transform a detector stores: shorter side to ``image_size`` (pretrained: ``* 256 /
    224``, ImageNet's), then a centre crop."""
    resize = round(image_size * 256 / 224) if pretrained else image_size
    return {
        "resize": int(resize),
        "crop": int(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def build_eval_transform(spec: dict[str, Any]) -> Callable:
    """Resize, CenterCrop, Normalize as ``spec`` says: image -> float (3, crop, crop). Lessons 04 and 06."""
    missing = {"resize", "crop", "mean", "std"} - set(spec)
    if missing:
        raise ValueError(
            f"transform spec {spec} is missing {sorted(missing)}; make one with eval_transform_spec()"
        )
    interpolation = T.InterpolationMode(spec.get("interpolation", "bilinear"))
    return T.Compose(
        [
            T.Resize(int(spec["resize"]), interpolation=interpolation, antialias=True),  # shorter side
            T.CenterCrop(int(spec["crop"])),
            *_to_normalised_tensor(spec["mean"], spec["std"]),
        ]
    )


def scratch_transforms(image_size: int) -> tuple[Callable, Callable]:
    """``(train, eval)`` transforms for training from scratch (lesson 03): flips and whole-pixel shifts
    only, which keep the generators' fingerprints (random resized crops would blur them away)."""
    eval_tf = build_eval_transform(eval_transform_spec(image_size, pretrained=False))
    train_tf = T.Compose(
        [
            T.Resize(image_size, antialias=True),  # no-op when the image already has this size
            T.CenterCrop(image_size),
            T.RandomHorizontalFlip(),
            T.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect"),
            *_to_normalised_tensor(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return train_tf, eval_tf


def pretrained_transforms(image_size: int = 224) -> tuple[Callable, Callable]:
    """``(train, eval)`` transforms for fine-tuning (lesson 04): ImageNet's, random crops and flips."""
    spec = eval_transform_spec(image_size, pretrained=True)
    eval_tf = build_eval_transform(spec)
    train_tf = T.Compose(
        [
            T.Resize(spec["resize"], antialias=True),
            T.RandomCrop(image_size),
            T.RandomHorizontalFlip(),
            *_to_normalised_tensor(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return train_tf, eval_tf


def normalise_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) from the image cache (``helpers.data.cache``) -> ImageNet-normalised float32."""
    if images.dtype != torch.uint8:
        return images
    return T.functional.normalize(
        T.functional.to_dtype(images, torch.float32, scale=True), list(IMAGENET_MEAN), list(IMAGENET_STD)
    )
