"""What one upload costs the demo before the model runs: decoding it and its eval transform, by size.

    python benchmarks/demo_decode.py [--megapixels 12 24 32 48] [--repeats 3]

For each size a photo-like image (gradients plus noise, 4:3) is written once as a JPEG and as an
8-bit PNG; then ``helpers.data.images.load_image_rgb`` followed by ViT-B/16's eval transform (resize the
shorter side to 256, centre crop 224, normalise) is timed, the median of ``--repeats`` runs, in
this one process with torch's default threads, as the demo runs it. Prints seconds per upload and
the ratio to the smallest size: the time grows with the pixels, which is why the demo refuses
uploads above ``helpers.serving.demo.MAX_UPLOAD_PIXELS`` (see app/README.md).

Measure on an otherwise idle machine; on a shared one the numbers are upper bounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from helpers.data.images import load_image_rgb  # noqa: E402
from helpers.data.transforms import build_eval_transform, eval_transform_spec  # noqa: E402


def photo_like(megapixels: float, seed: int = 0) -> Image.Image:
    """A 4:3 RGB image of about ``megapixels`` million pixels that compresses like a photo."""
    height = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    width = int(height * 4 / 3)
    rng = np.random.default_rng(seed)
    rows = np.sin(np.arange(height) / 17)[:, None, None]
    columns = np.sin(np.arange(width) / 13)[None, :, None]
    pixels = 127 + 60 * rows + 60 * columns + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def seconds_per_upload(path: Path, transform, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        transform(load_image_rgb(path))  # (3, 224, 224)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[12, 24, 32, 48])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    transform = build_eval_transform(eval_transform_spec(224, pretrained=True))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for megapixels in args.megapixels:
            image = photo_like(megapixels)
            for kind in ("jpg", "png"):
                path = Path(folder) / f"{megapixels:g}mp.{kind}"
                image.save(path, quality=90) if kind == "jpg" else image.save(path, compress_level=1)
                rows.append((megapixels, kind, image.size, seconds_per_upload(path, transform, args.repeats)))
                path.unlink()
    base = {kind: seconds for megapixels, kind, _, seconds in rows if megapixels == rows[0][0]}
    print(f"{'size':>19} {'format':>6} {'seconds':>8} {'x smallest':>10}")
    for megapixels, kind, (width, height), seconds in rows:
        size = f"{width}x{height}"
        print(f"{size:>12} {megapixels:3g} MP {kind:>6} {seconds:8.2f} {seconds / base[kind]:10.1f}")


if __name__ == "__main__":
    main()
