"""Opening any image safely: one function that turns whatever PIL can read into an upright RGB image.

Used wherever the course reads an image file: the datasets (lesson 03), the predictor and the demo
(lesson 06). A file that cannot be decoded raises :class:`ImageLoadError` naming it, never a
confusing error deep inside a DataLoader; :func:`check_pixel_limit` refuses a decompression bomb
(a small file that would take gigabytes once decoded) and :func:`check_resized_size` an image too
elongated to resize, both before any pixel is decoded.
"""

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


def _describe(path_or_fileobj: str | os.PathLike | BinaryIO) -> str:
    if isinstance(path_or_fileobj, str | os.PathLike):
        return str(path_or_fileobj)
    return str(getattr(path_or_fileobj, "name", "<in-memory file>"))


# 16-bit value v -> 8-bit round(v / 257), a 65,536-entry lookup table (64 KB). 65535 / 257 = 255, and
# v / 257 is never exactly halfway (257 is odd), so round(v / 257) = (v + 128) // 257 in integers.
_SIXTEEN_TO_EIGHT_BITS = ((np.arange(65536, dtype=np.uint32) + 128) // 257).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, the way an image viewer would show it."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit (PNG/TIFF): PIL's convert("RGB") would clip at 255, so scale 0..65535 -> 0..255 with a
        # lookup table: one byte out per pixel, no float copy (a 9400x9400 PNG would need 700 MB
        # in float64). Mode "I" (32-bit) holding values <= 255 is treated as 8-bit data.
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
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        # Transparent pixels are shown on white, as in a browser.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image_rgb(
    path_or_fileobj: str | os.PathLike | BinaryIO | Image.Image, *, draft_size: int | None = None
) -> Image.Image:
    """Open any PIL-decodable image (or take an opened one); return it upright (EXIF) in mode "RGB".

    Handles RGBA/LA/P with transparency (composited on white), L, 1-bit, CMYK, 16-bit PNG/TIFF
    (scaled to 8 bits), and animated GIF/WebP/TIFF (first frame). ``draft_size`` lets a JPEG decode
    at a reduced scale (at least that many pixels per side), which is faster. Lessons 03 and 06.

    Raises:
        ImageLoadError: the file is empty, truncated, not an image, or larger than PIL's
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``). The message names the file.
        FileNotFoundError: the path does not exist.
    """
    if isinstance(path_or_fileobj, Image.Image):  # already decoded, e.g. an upload a UI opened for us
        image = path_or_fileobj
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # first frame of an animation
        return _to_rgb(ImageOps.exif_transpose(image))
    name = _describe(path_or_fileobj)
    try:
        with Image.open(path_or_fileobj) as image:
            image.seek(0)  # first frame of an animation
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()  # full decode: truncated data fails here, not later in a DataLoader
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"{name}: refused to decode, more pixels than PIL's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}): {error}"
        ) from error
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, MemoryError) as error:
        # PIL raises these for empty, truncated, corrupt or unknown files
        # (UnidentifiedImageError is an OSError).
        raise ImageLoadError(
            f"{name}: cannot be decoded as an image ({type(error).__name__}: {error})"
        ) from error


def check_pixel_limit(path: str | os.PathLike, max_pixels: int | None = None) -> None:
    """Refuse an image above ``max_pixels`` (default: PIL's decompression-bomb limit) before decoding
    it; only the header is read (lesson 06's demo).

    A "decompression bomb" is a small file that would need gigabytes of memory once decoded. PIL
    refuses images with more than twice ``PIL.Image.MAX_IMAGE_PIXELS`` pixels and only warns between
    1x and 2x; the demo, which decodes whatever strangers upload, refuses those too, and passes a
    smaller ``max_pixels`` (:data:`helpers.serving.demo.MAX_UPLOAD_PIXELS`) to bound the time one
    upload takes.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(path) as header:  # reads the header only, not the pixels
            width, height = header.size
    except Image.DecompressionBombError as err:  # above twice the limit PIL refuses to open it at all
        raise ImageLoadError(f"it is above PIL's decompression-bomb limit ({err})") from err
    if limit is None or width * height <= limit:
        return
    size = f"{width}x{height} pixels ({width * height / 1e6:.0f} M)"
    if max_pixels is None:
        raise ImageLoadError(
            f"{size} is above the decompression-bomb limit of {limit / 1e6:.0f} M pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS)"
        )
    raise ImageLoadError(
        f"{size} is above the limit of {limit / 1e6:.0f} M pixels (max_pixels); scale it down to at "
        f"most {limit / 1e6:.0f} M pixels"
    )


def check_resized_size(path: str | os.PathLike, resize: int) -> None:
    """Refuse an image so elongated that the eval transform's first step would make it huge (lesson 06).

    The eval transform scales the *shorter* side to ``resize`` pixels and only then crops, so a
    5000 x 1 strip (a PNG of a few hundred bytes) becomes 256 x 1,280,000 pixels on the way: 2 s and
    1.3 GB more memory with ViT-B/16's transform (measured). Refused above
    :data:`MAX_RESIZED_PIXELS`, which any photo or panorama stays far below. Reads the header only.
    """
    with Image.open(path) as header:  # reads the header only
        shorter, longer = sorted(header.size)
    pixels = resize * math.ceil(longer * resize / max(shorter, 1))
    if pixels > MAX_RESIZED_PIXELS:
        raise ImageLoadError(
            f"it is {longer}x{shorter} pixels, too elongated: scaled to {resize} px on its shorter side "
            f"it would have {pixels / 1e6:.0f} M pixels (the limit is {MAX_RESIZED_PIXELS / 1e6:.0f} M)"
        )


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Files with an image extension under ``folder`` (recursive, sorted); hidden files and macOS
    ``__MACOSX`` junk are left out. Nothing is decoded here."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for filename in sorted(filenames):
            if not filename.startswith(".") and filename.lower().endswith(IMAGE_EXTENSIONS):
                files.append(Path(dirpath) / filename)
    return files


def warn_skipped(problems: Sequence[str], where: str, *, stacklevel: int = 3) -> None:
    """ONE warning for every file skipped ``where`` (e.g. "under data/toy"), naming the first 20.

    Indexing, the prepared copy and the image cache skip undecodable and vanished files this way,
    so a bad file costs a line of output, never a crash in the middle of an epoch. The warning points
    at the caller of the function that calls this (``stacklevel=3``). Lesson 03.
    """
    if not problems:
        return
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    shown = "\n  ".join(problems[:20]) + more
    warnings.warn(f"Skipped {len(problems)} undecodable file(s) {where}:\n  {shown}", stacklevel=stacklevel)
