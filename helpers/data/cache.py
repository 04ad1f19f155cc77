"""The decoded image cache, and :class:`CachedImageFolder`, the Dataset that reads it (full mode of lessons 03
to 06). Decoding is a DataLoader's dearest step (~2.7 ms per 256-pixel PNG), so every image is decoded
once, as ``Resize(S)`` (shorter side S), uint8 (3, H, W), read through ``np.memmap``::

    root/.image_cache/pixels.u8    image after image
    root/.image_cache/index.json   {"size": S, "images": [[name, bytes, mtime_ns, H, W, offset, side], ...]}
    root/.image_cache/.complete    written last (helpers._files.building_folder)

A file is read from the cache when unchanged (size, mtime) and when the v2 transform resizes to S first,
or the file's side already is S (``tests/test_image_cache.py`` checks both match decoding); else it is
decoded. When the transform ends with ImageNet normalisation, samples stay uint8 and
``transforms.normalise_batch`` finishes the batch on the device. ``python -m helpers.data cache``;
``benchmarks/data_loading.py``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from helpers._files import building_folder, explain_disk_full, read_marker, write_json
from helpers.data.datasets import ImageFolderDataset
from helpers.data.images import ImageLoadError, list_image_files, load_image_rgb, warn_skipped
from helpers.data.index import vanished
from helpers.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CACHE_FOLDER = ".image_cache"  # hidden: list_image_files never sees it
PIXELS_FILE = "pixels.u8"
INDEX_FILE = "index.json"
VERSION = 2


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """The shorter side resized to ``size`` pixels, as the course's transforms' ``T.Resize(size)``."""
    return TF.resize(image, [size], antialias=True)


def resize_for_cache(image: Image.Image, size: int) -> np.ndarray:
    """``Resize(size)`` of a decoded RGB image as a (3, H, W) uint8 array: shorter side ``size``."""
    resized = resize_shorter_side(image, size)
    return np.ascontiguousarray(np.asarray(resized).transpose(2, 0, 1))  # (H, W, 3) -> (3, H, W)


class CacheWriter:
    """Appends images to ``folder/pixels.u8``; :meth:`finish` writes ``folder/index.json``."""

    def __init__(self, folder: Path, size: int):
        self.folder, self.size = Path(folder), size
        self.rows: list[list] = []
        self.offset = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = open(self.folder / PIXELS_FILE, "wb")  # noqa: SIM115 (closed by finish)

    def add(self, name: str, pixels: np.ndarray, file_stat: os.stat_result, side: int) -> None:
        """Append ``pixels`` (3, H, W) uint8 of file ``name`` (relative), whose shorter side is ``side``."""
        _, height, width = pixels.shape
        self.file.write(pixels.tobytes())
        self.rows.append([name, file_stat.st_size, file_stat.st_mtime_ns, height, width, self.offset, side])
        self.offset += pixels.nbytes

    def finish(self) -> None:
        self.file.close()
        write_json(self.folder / INDEX_FILE, {"version": VERSION, "size": self.size, "images": self.rows})


def _decode_for_cache(path: Path, size: int) -> tuple[np.ndarray, os.stat_result, int] | str:
    """(pixels (3, H, W), the file's stat, its shorter side) of one image, or why it was skipped."""
    try:
        file_stat = path.stat()  # first: a file changed after this is found stale later, never trusted
        image = load_image_rgb(path)
        return resize_for_cache(image, size), file_stat, min(image.size)
    except ImageLoadError as error:
        return str(error)
    except FileNotFoundError:
        return vanished(path)


def build_image_cache(root: str | os.PathLike, size: int, progress: bool = True) -> Path:
    """Decode every image under ``root`` into ``root/.image_cache`` at ``size`` (reused if unchanged)."""
    root = Path(root)
    folder, files = root / CACHE_FOLDER, list_image_files(root)
    existing = ImageCache.open(root)
    if existing is not None and existing.size == size and existing.covers(files):
        return existing.folder
    problems: list[str] = []
    with building_folder(folder, {"cache": "decoded images", "size": size}) as building:
        with explain_disk_full(root, "writing the image cache"):
            writer = CacheWriter(building, size)
            # PIL decodes and resizes without holding the GIL, so threads decode in parallel.
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                results = pool.map(_decode_for_cache, files, [size] * len(files))
                shown = tqdm(results, total=len(files), desc=f"Caching at {size} px", disable=not progress)
                for path, result in zip(files, shown, strict=True):
                    if isinstance(result, str):
                        problems.append(result)
                    else:
                        writer.add(path.relative_to(root).as_posix(), *result)
            writer.finish()
    warn_skipped(problems, f"while caching {root}")
    return folder


@functools.lru_cache(maxsize=8)
def _read_index(index_path: str, stamp: int) -> dict:
    """The parsed index.json (cached per modification time: the three split datasets share it)."""
    return json.loads(Path(index_path).read_text(encoding="utf-8"))


class ImageCache:
    """A complete cache, read: ``row(path)`` finds a file's image, ``tensor(row)`` its pixels (picklable)."""

    def __init__(self, folder: Path, index: dict):
        self.folder = Path(folder)
        self.root = self.folder.parent
        self.size = int(index["size"])
        self.rows = {name: i for i, (name, *_) in enumerate(index["images"])}
        # (N, 6) int64: file size, file mtime_ns, H, W, offset, the file's shorter side
        self.table = np.array([row[1:] for row in index["images"]], dtype=np.int64).reshape(-1, 6)
        self._pixels: np.ndarray | None = None

    @classmethod
    def open(cls, root: str | os.PathLike) -> ImageCache | None:
        """The cache of the image folder ``root``, or None when it has none that is complete."""
        folder = Path(root) / CACHE_FOLDER
        index_path = folder / INDEX_FILE
        if read_marker(folder) is None:
            return None
        try:
            index = _read_index(str(index_path), index_path.stat().st_mtime_ns)
        except (OSError, ValueError):
            return None
        return cls(folder, index) if index.get("version") == VERSION else None

    @classmethod
    def for_files(cls, paths: Sequence[Path]) -> ImageCache | None:
        """The cache of the folder holding ``paths`` (up to three folders above the first), or None."""
        if not paths:
            return None
        for folder in list(Path(paths[0]).parents)[:3]:
            if (folder / CACHE_FOLDER).is_dir():
                return cls.open(folder)
        return None

    def row(self, path: str | os.PathLike, resize: int | None = None) -> int | None:
        """The cached image of ``path``, or None: not cached, changed, or the cache's size is neither
        ``resize`` (a transform's first resize) nor the file's side."""
        path = Path(path)
        try:
            i = self.rows.get(path.relative_to(self.root).as_posix())
            if i is None:
                return None
            file_stat = path.stat()
        except (ValueError, OSError):  # not under this root, or vanished
            return None
        size, mtime_ns, side = self.table[i, [0, 1, 5]]
        if (file_stat.st_size, file_stat.st_mtime_ns) != (size, mtime_ns):
            return None
        return i if resize is None or self.size in (resize, side) else None

    def covers(self, paths: Sequence[Path]) -> bool:
        """True when every one of ``paths`` is cached and unchanged, and nothing else is cached."""
        return len(paths) == len(self.rows) and all(self.row(p) is not None for p in paths)

    def tensor(self, row: int) -> torch.Tensor:
        """The cached pixels of image ``row``: uint8 (3, H, W), read from the memory-mapped file."""
        if self._pixels is None:
            # "c" (copy on write): a writable view, so torch does not warn, that never writes the file
            self._pixels = np.memmap(self.folder / PIXELS_FILE, dtype=np.uint8, mode="c")
        _, _, height, width, offset, _ = self.table[row]
        flat = self._pixels[offset : offset + 3 * height * width]
        return torch.from_numpy(flat).view(3, int(height), int(width))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}  # each worker process maps the file itself


def _first_resize(transform: Callable | None) -> int | None:
    """The size a v2 transform resizes the shorter side to before anything else, or None."""
    steps = getattr(transform, "transforms", [transform])
    first = steps[0] if steps else None
    if isinstance(first, v2.Resize) and len(first.size) == 1 and first.max_size is None:
        return int(first.size[0])
    return None


def _before_normalisation(transform: Callable | None) -> list[Callable] | None:
    """A v2 ``Compose``'s steps before its closing ToImage, ToDtype(float32), Normalize(ImageNet),
    ToPureTensor, or None when it does not end with exactly those."""
    steps = list(getattr(transform, "transforms", []))
    tail = steps[-4:]
    kinds = [v2.ToImage, v2.ToDtype, v2.Normalize, v2.ToPureTensor]
    if [type(step) for step in tail] != kinds or tail[1].dtype != torch.float32 or not tail[1].scale:
        return None
    same = list(tail[2].mean) == list(IMAGENET_MEAN) and list(tail[2].std) == list(IMAGENET_STD)
    return steps[:-4] if same else None


class CachedImageFolder(ImageFolderDataset):
    """An :class:`~helpers.data.datasets.ImageFolderDataset` reading what it can from the image cache;
    ``cache_rows[i]`` (None: decoded), ``cached`` (how many). Samples stay uint8 as the module says."""

    def __init__(self, samples: Sequence[tuple[str | os.PathLike, int]], transform: Callable | None = None):
        super().__init__(samples, transform)
        paths = [path for path, _ in self.samples]
        cache = ImageCache.for_files(paths) if isinstance(transform, v2.Transform) else None
        resize = _first_resize(transform)
        self.cache_rows = [cache.row(path, resize) if cache else None for path in paths]  # None: decode
        self.cache = cache if any(row is not None for row in self.cache_rows) else None
        self.cached = sum(row is not None for row in self.cache_rows)
        head = _before_normalisation(transform) if self.cached else None
        if head is not None:  # decoded rows too, so that a batch has one dtype
            self.transform = v2.Compose([*head, v2.ToImage(), v2.ToPureTensor()])  # uint8 (3, H, W)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        row = self.cache_rows[index]
        if row is None or self.cache is None:
            return super().__getitem__(index)  # decoded, as in the plain dataset
        image = self.cache.tensor(row)  # (3, H, W) uint8, shorter side = the cache's size
        return self.transform(image), self.samples[index][1]  # a v2 transform: never None here


def folder_dataset(
    samples: Sequence[tuple[str | os.PathLike, int]], transform: Callable | None = None
) -> ImageFolderDataset:
    """The Dataset of an image folder's ``samples``: a :class:`CachedImageFolder` when the folder's cache
    serves this ``transform``, else an ``ImageFolderDataset`` (``create_dataloaders(dataset=...)``). Lessons
    03-06."""
    dataset = CachedImageFolder(samples, transform)
    return dataset if dataset.cached else ImageFolderDataset(samples, transform)
