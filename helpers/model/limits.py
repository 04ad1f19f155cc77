"""What :mod:`helpers.model.vit` accepts from outside: the limits of a config, the keys and shapes of weights.

A :class:`~helpers.model.vit.ViTConfig` can come from a ``config.json`` someone else wrote (lesson 06 loads
detectors from files), so every field is checked when the config is made: a bad value fails at once
with a ValueError naming the field and the value, instead of deep inside torch or as a request for
terabytes of memory. ``ViT.from_torchvision`` (lessons 02 and 04) checks torchvision's weights key by
key and shape by shape before it takes them. The checks live here so that ``helpers/model/vit.py`` reads as
the model; it calls them in two places (``ViTConfig.__post_init__``, ``ViT.from_torchvision``).

The bounds are far above every published ViT: the largest, ViT-22B (Dehghani et al., 2023), has
width 6144, 48 blocks and MLP size 24576.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # for type hints only: helpers.model.vit imports this module
    from helpers.model.vit import ViTConfig

MAX_IMAGE_SIZE = 4096  # pixels per side; published ViTs use 224 to 896
MAX_PATCHES = 16_384  # N, attention costs N^2; ViT-B/16 has 196 at 224 px, 16,384 at 2048 px
MAX_IN_CHANNELS = 64  # RGB is 3; multispectral satellite images have about a dozen bands
MAX_CLASSES = 100_000  # ImageNet-21k has 21,843 classes
MAX_DIM = 8192  # D
MAX_MLP_DIM = 4 * MAX_DIM  # the MLP is usually 4 x D wide
MAX_DEPTH = 128  # encoder blocks
MAX_PARAMETERS = 2_000_000_000  # 8 GB as float32; ViT-G/14 (Zhai et al., 2022) has 1.8 B

# The largest value of each whole-number field (every one must be at least 1).
UPPER_BOUNDS = {
    "image_size": MAX_IMAGE_SIZE,
    "patch_size": MAX_IMAGE_SIZE,
    "in_channels": MAX_IN_CHANNELS,
    "num_classes": MAX_CLASSES,
    "dim": MAX_DIM,
    "depth": MAX_DEPTH,
    "heads": MAX_DIM,
    "mlp_dim": MAX_MLP_DIM,
}
PROBABILITIES = ("dropout", "attention_dropout")  # each in [0, 1)


def checked_fields(config: ViTConfig) -> dict[str, int | float]:
    """Every field of ``config`` as a plain int (sizes) or float (dropouts), each checked on its own.

    Sizes must be whole numbers (ints, also NumPy's; not 224.0, not True) from 1 up to
    :data:`UPPER_BOUNDS`; dropouts numbers in [0, 1).
    """
    values: dict[str, int | float] = {}
    for name, most in UPPER_BOUNDS.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(
                f"ViTConfig.{name}={value!r} must be a whole number, not {type(value).__name__}."
            )
        if not 1 <= value <= most:
            raise ValueError(f"ViTConfig.{name}={value} must be from 1 to {most:,}.")
        values[name] = int(value)
    for name in PROBABILITIES:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
            raise ValueError(f"ViTConfig.{name}={value!r} must be a number from 0 up to (not including) 1.")
        values[name] = float(value)
    return values


def check_sizes_fit(config: ViTConfig) -> None:
    """The fields together: whole patches, ``dim`` divisible by ``heads``, at most :data:`MAX_PATCHES`
    patches and :data:`MAX_PARAMETERS` parameters (counted from the sizes, nothing is allocated)."""
    if config.image_size % config.patch_size != 0:
        raise ValueError(
            f"image_size={config.image_size} is not a multiple of patch_size={config.patch_size}; "
            "pick sizes so that the image splits into whole patches."
        )
    if config.dim % config.heads != 0:
        raise ValueError(f"dim={config.dim} must be divisible by heads={config.heads}.")
    if config.num_patches > MAX_PATCHES:
        raise ValueError(
            f"image_size={config.image_size} in patches of patch_size={config.patch_size} makes "
            f"{config.num_patches:,} patches, above the limit of {MAX_PATCHES:,} (attention costs N^2); "
            "use larger patches or smaller images."
        )
    if config.num_parameters > MAX_PARAMETERS:
        raise ValueError(
            f"this ViTConfig describes {config.num_parameters / 1e9:.1f} B parameters, above the limit of "
            f"{MAX_PARAMETERS / 1e9:.0f} B ({4 * MAX_PARAMETERS / 1e9:.0f} GB as float32): {config}"
        )


def check_torchvision_keys(state: Mapping[str, torch.Tensor], expected: Iterable[str]) -> None:
    """Refuse torchvision weights with a key missing (KeyError) or one too many (ValueError), naming them."""
    expected = set(expected)
    missing = sorted(expected - set(state))
    if missing:
        raise KeyError(f"torchvision ViT weights have no {missing}: is this a VisionTransformer state dict?")
    extra = sorted(set(state) - expected)
    if extra:
        raise ValueError(
            f"Unexpected key(s) {extra} in torchvision ViT weights; only a plain ViT with "
            "one Linear head (no conv stem, no pre_logits) can be loaded."
        )


def check_weight_shapes(
    new_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor], theirs: Mapping[str, str]
) -> None:
    """Refuse a tensor whose shape differs from our model's tensor of that name, naming both keys.

    ``theirs`` maps each of our keys to torchvision's, for the message.
    """
    for ours, tensor in new_state.items():
        got, needed = tuple(tensor.shape), tuple(model_state[ours].shape)
        if got != needed:
            raise ValueError(f"{theirs[ours]!r} has shape {got} but {ours!r} needs {needed}.")
