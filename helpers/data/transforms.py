"""Every image transform of the course, built from ImageNet's mean and standard deviation.

- From scratch (lesson 03): :func:`scratch_transforms`, flips and whole-pixel shifts only, so the
  generators' pixel-level fingerprints survive augmentation.
- Fine-tuning an ImageNet ViT (lesson 04): :func:`pretrained_transforms`, the ImageNet recipe.
- A detector stores its eval transform as data, :func:`eval_transform_spec` (a JSON-able dict in
  its ``config.json``), and :func:`build_eval_transform` rebuilds it (lessons 04 and 06), so the
  demo sees images exactly as the test set did.

Every transform is built from ``torchvision.transforms.v2`` and takes either a PIL image (a decoded
file) or a uint8 tensor (3, H, W) (a row of :mod:`helpers.data.cache`); the resizing and cropping
happen before the conversion to floats, so both give the same numbers (see ``helpers.data.cache``).
"""

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
    """The JSON-able description of the eval transform that an exported detector stores.

    From scratch: resize the shorter side to ``image_size`` and centre-crop it. Pretrained (ImageNet
    recipe): resize to ``image_size * 256 / 224`` and centre-crop ``image_size``; at 224 this is
    exactly ``ViT_B_16_Weights.IMAGENET1K_V1.transforms()`` (lesson 04 checks it).
    """
    resize = round(image_size * 256 / 224) if pretrained else image_size
    return {
        "resize": int(resize),
        "crop": int(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def build_eval_transform(spec: dict[str, Any]) -> Callable:
    """PIL image (or uint8 tensor) -> normalised float tensor (3, crop, crop) with no randomness:
    Resize, CenterCrop, Normalize, as described by ``spec`` (see :func:`eval_transform_spec`).
    Lessons 04 and 06."""
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


def scratch_transforms(image_size: int, augment: bool = True) -> tuple[Callable, Callable]:
    """``(train, eval)`` transforms for training a ViT from scratch at ``image_size`` (lesson 03).

    Training augmentation is horizontal flips and translations (reflect-pad by 1/8 of the size, then
    a random crop): neither resamples pixels, so the generator fingerprints survive. Random resized
    crops would interpolate the image and blur away the very artifacts the model should find.
    """
    eval_tf = build_eval_transform(eval_transform_spec(image_size, pretrained=False))
    if not augment:
        return eval_tf, eval_tf
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
    """``(train, eval)`` transforms for fine-tuning an ImageNet ViT (lesson 04): the ImageNet eval
    recipe, plus a random (instead of centre) crop and horizontal flips for training."""
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
