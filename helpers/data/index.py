"""The decode check behind ``find_images(check=True)``: which files of a folder decode (lesson 03).

Every image is decoded once (JPEGs at 1/8 scale, still reading all the data), so bad or vanished files
are skipped before training with ONE warning. The results are stored in ``root/.image_index.json`` with
each file's size and mtime, so later calls decode only new or changed files (or none the cache holds).
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


def _stat(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path``, None when it vanished."""
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
    """Why each of ``paths`` cannot be used (None: it decodes), decoding only what neither the stored
    index nor the image cache knows; the index is then updated (unless ``root`` is read-only)."""
    from helpers.data.cache import ImageCache  # here: cache imports datasets, which imports this module

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
            pass  # a read-only dataset is checked again next time
    return problems


def usable_files(root: str | os.PathLike, paths: list[Path]) -> list[Path]:
    """The ``paths`` under ``root`` that decode, in order; the others skipped with one warning (shown at
    the line that called :func:`helpers.data.datasets.find_images`)."""
    root = Path(root)
    problems = _check_files(root, paths)
    warn_skipped([problem for problem in problems if problem is not None], f"under {root}", stacklevel=4)
    return [path for path, problem in zip(paths, problems, strict=True) if problem is None]
