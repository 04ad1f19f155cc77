"""What images go through around the internet (JPEG re-compression, shrinking, enlarging back), as functions
of a PIL image: lesson 05 tests whether a detector's evidence survives them."""

from __future__ import annotations

import io

from PIL import Image

from helpers.data.images import load_image_rgb


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` saved as a JPEG of ``quality`` (1-95) in memory and decoded again, as RGB."""
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be between 1 and 95, got {quality}")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return load_image_rgb(buffer)


def down_up(image: Image.Image, factor: float) -> Image.Image:
    """Shrink ``image`` by ``factor`` (0 < factor <= 1), then enlarge it back to its size; bilinear."""
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    small_size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(small_size, Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.BILINEAR)
