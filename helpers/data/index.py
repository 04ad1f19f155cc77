"""The decode check behind ``find_images(check=True)``: which files of a folder decode (lesson 03).

Every image is decoded once (JPEGs at 1/8 scale, which still reads all of the compressed data), so
empty, truncated, corrupt or oversized files, and files that vanished since they were listed, are
found before training rather than in the middle of an epoch, and skipped with ONE warning that names
them. What the check found is stored beside the data in ``root/.image_index.json`` with each file's
size and modification time, so the next call (another loader, another process of a multi-GPU run)
decodes only files that are new or changed; a file the image cache holds decoded when the cache was
made and is not decoded again.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers._files import write_json
from helpers.data.images import ImageLoadError, load_image_rgb, warn_skipped

INDEX_FILE = ".image_index.json"  # what the check learnt about each file, stored beside the data


def vanished(path: Path) -> str:
    """Why a file that was listed cannot be read any more (it is skipped like an undecodable one)."""
    return f"{path}: vanished before it could be read (deleted, moved, or a link to a missing file)"


def _decode_problem(path: Path) -> str | None:
    """None if ``path`` decodes (JPEGs at about 1/8 scale: all compressed data is still read),
    else why not."""
    try:
        load_image_rgb(path, draft_size=64)
    except ImageLoadError as error:
        return str(error)
    except FileNotFoundError:
        return vanished(path)
    return None


def _stat(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path``: what says a file is unchanged. None when it vanished."""
    try:
        file_stat = path.stat()
    except FileNotFoundError:
        return None
    return file_stat.st_size, file_stat.st_mtime_ns


def _read_index(root: Path) -> dict[str, list]:
    """The stored index of ``root``: relative name -> [size, mtime_ns, problem or None]."""
    try:
        return dict(json.loads((root / INDEX_FILE).read_text(encoding="utf-8")).get("files", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _check_files(root: Path, paths: list[Path]) -> list[str | None]:
    """Why each of ``paths`` cannot be used (None: it decodes), reusing what is known.

    Known: the stored index (a file with the same size and mtime was checked before) and the image
    cache (a cached file decoded when the cache was made). Only the rest is decoded; the stored index
    is then updated (quietly skipped when ``root`` is read-only).
    """
    # Imported here: helpers.data.cache builds on helpers.data.datasets, which imports this module.
    from helpers.data.cache import ImageCache

    stored, cache = _read_index(root), ImageCache.open(root)
    names = [path.relative_to(root).as_posix() for path in paths]
    stats = [_stat(path) for path in paths]
    problems: list[str | None] = [None] * len(paths)
    to_decode = []
    for i, (path, name, stat) in enumerate(zip(paths, names, stats, strict=True)):
        known = stored.get(name)
        if stat is None:
            problems[i] = vanished(path)
        elif known is not None and tuple(known[:2]) == stat:
            problems[i] = known[2]
        elif cache is None or cache.row(path) is None:
            to_decode.append(i)
    if to_decode:
        # PIL decodes without holding the GIL, so threads are enough.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            decoded = pool.map(_decode_problem, [paths[i] for i in to_decode])
            for i, problem in zip(to_decode, decoded, strict=True):
                problems[i] = problem
    index = {
        name: [*stat, problem]
        for name, stat, problem in zip(names, stats, problems, strict=True)
        if stat is not None
    }
    if index != stored:
        try:
            write_json(root / INDEX_FILE, {"version": 1, "files": index})
        except OSError:
            pass  # a read-only dataset is indexed again next time, as before the index existed
    return problems


def usable_files(root: str | os.PathLike, paths: list[Path]) -> list[Path]:
    """The ``paths`` (files under ``root``) that decode, in their order; the others are skipped with
    one warning that names them (shown at the line that called :func:`helpers.data.datasets.find_images`)."""
    root = Path(root)
    problems = _check_files(root, paths)
    warn_skipped([problem for problem in problems if problem is not None], f"under {root}", stacklevel=4)
    return [path for path, problem in zip(paths, problems, strict=True) if problem is None]
