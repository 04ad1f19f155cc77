"""Why the download step can write a pre-resized copy: decoding large photos dominates loading time.

    python benchmarks/data_loading.py [--images 24] [--side 1500] [--max-side 256]

Writes ``--images`` synthetic photographs (``--side`` x ``--side`` JPEGs of about 1.3 MB, like the
Fake or Real originals) to a temporary folder, then measures, single-threaded:

1. indexing with ``find_images`` (which decodes every file once, JPEGs at reduced scale),
2. images/s of decode + the pretrained eval transform (Resize 256, CenterCrop 224, Normalize) on the
   originals,
3. the one-off cost of ``make_resized_copy(..., max_side)``,
4. images/s of the same loading from the copy, and the speed-up (target: at least 5x).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from helpers.datasets import CLASS_NAMES, ImageFolderDataset, find_images
from helpers.fake_or_real import make_resized_copy
from helpers.transforms import pretrained_transforms


def write_synthetic_photos(root: Path, count: int, side: int, seed: int = 0) -> None:
    """``count`` JPEGs (quality 95) split over both classes: a photo-like smooth field plus sensor noise."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / CLASS_NAMES[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.uniform(0, 255, (12, 12, 3)).astype(np.uint8)
        smooth = np.asarray(
            Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32
        )
        pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)  # (side, side, 3)
        Image.fromarray(pixels).save(folder / f"photo_{i:04d}.jpg", quality=95)


def images_per_second(dataset: ImageFolderDataset, repeats: int = 2) -> float:
    """Best of ``repeats`` passes over the dataset (decode + transform), in images per second."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        best = min(best, time.perf_counter() - start)
    return len(dataset) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--side", type=int, default=1500)
    parser.add_argument("--max-side", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    _, eval_tf = pretrained_transforms(224)
    with tempfile.TemporaryDirectory() as tmp:
        originals = Path(tmp) / "originals"
        write_synthetic_photos(originals, args.images, args.side)
        sizes = [p.stat().st_size for p in originals.rglob("*.jpg")]
        print(
            f"{len(sizes)} synthetic {args.side}x{args.side} JPEGs, {np.mean(sizes) / 1e6:.2f} MB on average"
        )

        start = time.perf_counter()
        samples, _ = find_images(originals)
        index_seconds = time.perf_counter() - start
        print(
            f"find_images (decode check): {1000 * index_seconds / len(samples):.1f} ms per image "
            f"-> about {index_seconds / len(samples) * 6750:.0f} s for the 6,750 images of Fake or Real"
        )
        original_speed = images_per_second(ImageFolderDataset(samples, eval_tf))
        print(f"originals:        {original_speed:7.1f} images/s (decode + Resize 256 + CenterCrop 224)")

        start = time.perf_counter()
        copy = make_resized_copy(originals, Path(tmp) / f"max{args.max_side}", args.max_side)
        print(f"make_resized_copy(max_side={args.max_side}): {time.perf_counter() - start:.1f} s, once")
        copy_samples, _ = find_images(copy)
        copy_speed = images_per_second(ImageFolderDataset(copy_samples, eval_tf))
        print(f"pre-resized copy: {copy_speed:7.1f} images/s")
        print(f"speed-up: {copy_speed / original_speed:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
