"""How fast the DataLoader feeds training: decoding the prepared copy's PNGs versus its image cache.

    python benchmarks/data_loading.py [--images 768] [--workers 2] [--batch-size 64] [--seconds 3]

Writes ``--images`` synthetic 256-pixel images (the prepared copy of Fake or Real: shorter side
256, half of them 256 x 341 "photos", half 256 x 256 "fakes", as PNG) to a temporary folder, builds
their image cache (``helpers.data.cache``), then measures, side by side in one run, the images per
second that a DataLoader with ``--workers`` worker processes delivers for 224-pixel training batches
(``pretrained_transforms(224)``: random crop, flip, normalise) when it

- decodes the PNG files (the same files, hard-linked into a folder without a cache), and
- reads the image cache (no decoding: a memory-mapped uint8 array, cropped and flipped as a tensor,
  handed out as uint8; the training step normalises the batch on the device, ``transforms.normalise_batch``).

Each is timed over whole epochs after one warm-up epoch (workers started, files in the page cache),
best of two rounds taken alternately. Two ceilings are printed too: one process reading the cache
(no DataLoader), and the DataLoader itself moving ready-made batches of that shape from its workers
(no image work at all), as float32 (what the course's transforms give) and as uint8. The last line
is the comparison: ``feed: X img/s cached vs Y img/s decoded (Z.Zx)``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from helpers.data.cache import CachedImageFolder, build_image_cache
from helpers.data.datasets import CLASS_NAMES, ImageFolderDataset, find_images
from helpers.data.loaders import make_loader
from helpers.data.transforms import pretrained_transforms


def write_prepared_images(root: Path, count: int, seed: int = 0) -> None:
    """``count`` PNGs with shorter side 256 over both classes: a smooth field plus sensor noise."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / CLASS_NAMES[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        width = 341 if i % 2 else 256  # real photos 4:3, fakes square
        coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
        smooth = np.asarray(
            Image.fromarray(coarse).resize((width, 256), Image.Resampling.BICUBIC), dtype=np.float32
        )
        pixels = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)  # (256, W, 3)
        Image.fromarray(pixels).save(folder / f"image_{i:05d}.png")


def link_without_cache(src: Path, dst: Path) -> None:
    """The same files in another folder (hard links: no copy), without the image cache."""
    for path in src.rglob("*.png"):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)


def loader_rate(loader: DataLoader, seconds: float) -> float:
    """Images per second over whole epochs, at least ``seconds`` long, after one warm-up epoch."""
    for _ in loader:  # warm-up: starts the (persistent) workers, reads the files once
        pass
    images, start = 0, time.perf_counter()
    while True:
        for batch, _ in loader:
            images += len(batch)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return images / elapsed


class ReadyMade(Dataset):
    """``count`` copies of one tensor: the DataLoader's own cost, with no image work at all."""

    def __init__(self, sample: torch.Tensor, count: int):
        self.sample, self.count = sample, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.sample, 0


def in_process_rate(dataset: ImageFolderDataset, count: int = 512) -> float:
    """Images per second of one process calling ``dataset[i]`` (no DataLoader, no collation)."""
    start = time.perf_counter()
    for i in range(count):
        dataset[i % len(dataset)]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="minimum timed duration of each measurement"
    )
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    torch.set_num_threads(1)  # as in a DataLoader worker
    train_tf, _ = pretrained_transforms(224)
    with tempfile.TemporaryDirectory() as tmp:
        cached_root, decoded_root = Path(tmp) / "prepared", Path(tmp) / "prepared_no_cache"
        write_prepared_images(cached_root, args.images)
        link_without_cache(cached_root, decoded_root)
        start = time.perf_counter()
        build_image_cache(cached_root, 256)
        seconds = time.perf_counter() - start
        size = (cached_root / ".image_cache" / "pixels.u8").stat().st_size
        rate = args.images / seconds
        print(
            f"image cache: {args.images} images, {size / 1e6:.0f} MB, "
            f"built in {seconds:.1f} s ({rate:.0f} img/s, once)"
        )

        datasets = {
            "cached": CachedImageFolder(find_images(cached_root)[0], train_tf),
            "decoded": ImageFolderDataset(find_images(decoded_root)[0], train_tf),
        }
        assert datasets["cached"].cached == args.images and datasets["cached"][0][0].dtype == torch.uint8
        for name, dataset in datasets.items():
            print(f"one process, no DataLoader, {name}: {in_process_rate(dataset):7.0f} img/s")

        def loader(dataset: Dataset) -> DataLoader:
            # as a training loader: shuffled, persistent workers, pinned on a GPU
            return make_loader(
                dataset,
                batch_size=args.batch_size,
                shuffle=True,
                seed=0,
                num_workers=args.workers,
                drop_last=True,
            )

        rates: dict[str, float] = {}
        for _ in range(2):  # alternate, keep the best: load from other processes hits both alike
            for name, dataset in datasets.items():
                rates[name] = max(rates.get(name, 0.0), loader_rate(loader(dataset), args.seconds))
        setting = f"DataLoader, {args.workers} workers, batches of {args.batch_size}"
        for name, rate in rates.items():
            print(f"{setting}, {name}: {rate:7.0f} img/s")
        for dtype in (torch.float32, torch.uint8):
            ready = ReadyMade(torch.zeros(3, 224, 224, dtype=dtype), args.images)
            rate = loader_rate(loader(ready), args.seconds)
            print(f"ceiling: {setting}, ready-made {dtype} (3, 224, 224) samples: {rate:7.0f} img/s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cached, decoded = rates["cached"], rates["decoded"]
    print(f"feed: {cached:.0f} img/s cached vs {decoded:.0f} img/s decoded ({cached / decoded:.1f}x)")


if __name__ == "__main__":
    main()
