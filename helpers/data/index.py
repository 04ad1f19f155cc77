"""The decode check behind ``find_images(check=True)`` (lesson 03): every image not in the image cache is
decoded once (JPEGs at 1/8 scale), so bad or vanished files are skipped before training with ONE warning."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers.data.images import ImageLoadError, load_image_rgb, warn_skipped


def vanished(path: Path) -> str:
    """Why a listed file cannot be read any more (it is skipped like an undecodable one)."""
    return f"{path}: vanished before it could be read (deleted, moved, or a link to a missing file)"


def _decode_problem(path: Path) -> str | None:
    """None if ``path`` decodes, else why not."""
    try:
        load_image_rgb(path, draft_size=64)
    except ImageLoadError as error:
        return str(error)
    except FileNotFoundError:
        return vanished(path)
    return None


def usable_files(root: str | os.PathLike, paths: list[Path]) -> list[Path]:
    """The ``paths`` under ``root`` that decode, in order (a file the image cache holds counts as
    decoded); the others skipped with one warning at the line that called ``find_images``."""
    from helpers.data.cache import ImageCache  # here: cache imports datasets, which imports this module

    cache = ImageCache.open(Path(root))
    to_decode = [path for path in paths if cache is None or cache.row(path) is None]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        problems = dict(zip(to_decode, pool.map(_decode_problem, to_decode), strict=True))
    warn_skipped([p for p in problems.values() if p is not None], f"under {root}", stacklevel=4)
    return [path for path in paths if problems.get(path) is None]
