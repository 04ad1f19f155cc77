"""The limits of a :class:`~helpers.model.vit.ViTConfig`, checked when it is made (no lesson: hardening):
a bad value from someone else's ``config.json`` (lesson 06) is a ValueError naming the field."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # helpers.model.vit imports this module
    from helpers.model.vit import ViTConfig

MAX_IMAGE_SIZE = 4096  # pixels per side
MAX_PATCHES = 16_384  # N; attention costs N^2 (ViT-B/16 at 224 px has 196)
MAX_PARAMETERS = 1_000_000_000  # 4 GB as float32: ViT-L/16 (0.3 B) and torchvision's ViT-H/14 fit
# The largest value of each whole-number field (every one must be at least 1).
UPPER_BOUNDS = {"image_size": MAX_IMAGE_SIZE, "patch_size": MAX_IMAGE_SIZE, "in_channels": 64,
                "num_classes": 100_000, "dim": 8192, "depth": 128, "heads": 8192,
                "mlp_dim": 4 * 8192}  # fmt: skip


def checked_fields(config: ViTConfig) -> dict[str, int | float]:
    """Every field as a plain int (sizes: 1 to :data:`UPPER_BOUNDS`) or float (dropouts, in [0, 1))."""
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
    for name in ("dropout", "attention_dropout"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
            raise ValueError(f"ViTConfig.{name}={value!r} must be a number from 0 up to (not including) 1.")
        values[name] = float(value)
    return values


def check_sizes_fit(config: ViTConfig) -> None:
    """Whole patches, heads that divide ``dim``, bounded patches and parameters (counted, not allocated)."""
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
