"""Opening any image safely, as an upright RGB image, or an :class:`ImageLoadError` naming the file; bombs
and over-elongated images refused from the header alone (lessons 03 and 06)."""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
MAX_RESIZED_PIXELS = 16_000_000  # 48 MB as RGB; see check_resized_size


class ImageLoadError(ValueError):
    """A file could not be decoded as an image (empty, truncated, not an image, or too large). Lesson 06."""


# 16-bit v -> 8-bit round(v / 257) = (v + 128) // 257 (never halfway: 257 is odd), a 64 KB lookup table.
_SIXTEEN_TO_EIGHT_BITS = ((np.arange(65536, dtype=np.uint32) + 128) // 257).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, the way an image viewer would show it."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit: convert("RGB") would clip at 255, so use the table; mode "I" with values <= 255 is 8-bit.
        values = np.asarray(image)  # (H, W) uint16 (I;16), or int32 (I)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            gray = _SIXTEEN_TO_EIGHT_BITS[np.clip(values, 0, 65535) if image.mode == "I" else values]
        else:
            gray = np.clip(values, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) <= 1.0:  # floats in [0, 1]
            values = values * 255.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:  # has alpha
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")  # on white, as in a browser
    return image.convert("RGB")


def load_image_rgb(
    path_or_fileobj: str | os.PathLike | BinaryIO | Image.Image, *, draft_size: int | None = None
) -> Image.Image:
    """Any PIL-decodable image (or an opened one) upright (EXIF) in mode "RGB": transparency on white, 16
    bits to 8, an animation's first frame; ``draft_size`` decodes a JPEG faster at a reduced scale. Raises
    :class:`ImageLoadError` naming the file, or ``FileNotFoundError``. Lessons 03 and 06."""
    if isinstance(path_or_fileobj, Image.Image):  # already decoded, e.g. an upload a UI opened for us
        image = path_or_fileobj
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # first frame of an animation
        return _to_rgb(ImageOps.exif_transpose(image))
    name = path_or_fileobj
    if not isinstance(name, str | os.PathLike):
        name = getattr(name, "name", "<in-memory file>")
    try:
        with Image.open(path_or_fileobj) as image:
            image.seek(0)  # first frame of an animation
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()  # full decode: truncated data fails here, not later in a DataLoader
            return _to_rgb(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as error:
        limit = f"PIL's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS})"
        raise ImageLoadError(f"{name}: refused to decode, more pixels than {limit}: {error}") from error
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, MemoryError) as error:
        # empty, truncated, corrupt or unknown files (UnidentifiedImageError is an OSError)
        raise ImageLoadError(
            f"{name}: cannot be decoded as an image ({type(error).__name__}: {error})"
        ) from error


def check_pixel_limit(path: str | os.PathLike, max_pixels: int | None = None) -> None:
    """Refuse an image above ``max_pixels`` (default: ``PIL.Image.MAX_IMAGE_PIXELS``, where PIL only warns)
    from its header alone: a small file may need gigabytes decoded. Lesson 06."""
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(path) as header:  # reads the header only, not the pixels
            width, height = header.size
    except Image.DecompressionBombError as err:  # above twice the limit PIL refuses to open it at all
        raise ImageLoadError(f"it is above PIL's decompression-bomb limit ({err})") from err
    if limit is None or width * height <= limit:
        return
    which = "decompression-bomb limit" if max_pixels is None else "limit"
    name = "PIL.Image.MAX_IMAGE_PIXELS" if max_pixels is None else "max_pixels"
    raise ImageLoadError(
        f"{width}x{height} pixels ({width * height / 1e6:.0f} M) is above the {which} of {limit / 1e6:.0f} M "
        f"pixels ({name}); scale it down to at most {limit / 1e6:.0f} M pixels"
    )


def check_resized_size(path: str | os.PathLike, resize: int) -> None:
    """Refuse an image so elongated that resizing its shorter side to ``resize`` before the crop would
    exceed :data:`MAX_RESIZED_PIXELS` (a 5000 x 1 strip: 1.3 GB at 256). Header only. Lesson 06."""
    with Image.open(path) as header:  # reads the header only
        shorter, longer = sorted(header.size)
    pixels = resize * math.ceil(longer * resize / max(shorter, 1))
    if pixels > MAX_RESIZED_PIXELS:
        raise ImageLoadError(
            f"it is {longer}x{shorter} pixels, too elongated: scaled to {resize} px on its shorter side "
            f"it would have {pixels / 1e6:.0f} M pixels (the limit is {MAX_RESIZED_PIXELS / 1e6:.0f} M)"
        )


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Files with an image extension under ``folder`` (recursive, sorted), without hidden or ``__MACOSX``."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for filename in sorted(filenames):
            if not filename.startswith(".") and filename.lower().endswith(IMAGE_EXTENSIONS):
                files.append(Path(dirpath) / filename)
    return files


def warn_skipped(problems: Sequence[str], where: str, *, stacklevel: int = 3) -> None:
    """ONE warning for the files skipped ``where`` (e.g. "under data/toy"), naming the first 20. Lesson 03."""
    if not problems:
        return
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    shown = "\n  ".join(problems[:20]) + more
    warnings.warn(f"Skipped {len(problems)} undecodable file(s) {where}:\n  {shown}", stacklevel=stacklevel)
