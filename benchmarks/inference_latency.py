"""Median CPU latency of one prediction, as the demo makes it: ViT-B/16 (224 px) and vit_tiny (64 px).

    python benchmarks/inference_latency.py [--runs 20] [--warmup 3] [--threads N]

Each run is ``Predictor.predict(path)`` on one JPEG file: decode, eval transform (resize, centre
crop, normalise), the ViT's forward pass and the softmax. Weights are random: latency does not
depend on their values. Warm-up runs come first (the first calls allocate memory and pick kernels).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from helpers.datasets import CLASS_NAMES  # noqa: E402
from helpers.inference import Predictor  # noqa: E402
from helpers.transforms import build_eval_transform, eval_transform_spec  # noqa: E402
from helpers.vit import ViT, count_parameters, get_config  # noqa: E402


def median_latency_ms(predictor: Predictor, image: Path, runs: int, warmup: int) -> float:
    """Median wall-clock time of ``predictor.predict(image)`` in milliseconds, after ``warmup`` calls."""
    for _ in range(warmup):
        predictor.predict(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.predict(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def random_predictor(model_name: str, pretrained_transform: bool) -> Predictor:
    """The model the demo would load for ``model_name``, with random weights, on the CPU."""
    config = get_config(model_name, num_classes=len(CLASS_NAMES))
    spec = eval_transform_spec(config.image_size, pretrained=pretrained_transform)
    model = ViT(config).eval()
    saved = {"model_name": model_name, "vit_config": config.to_dict(), "transform": spec}
    return Predictor(model, build_eval_transform(spec), list(CLASS_NAMES), saved, torch.device("cpu"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed predictions per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed predictions first")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "photo.jpg"  # a 640x480 photo-sized JPEG
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)).save(image, quality=90)
        threads = torch.get_num_threads()
        print(f"CPU latency of one prediction (median of {args.runs} runs, torch threads={threads}):")
        # ViT-B/16 is fine-tuned from ImageNet weights, so its detector records the ImageNet eval transform.
        for model_name, pretrained_transform in (("vit_b16", True), ("vit_tiny", False)):
            predictor = random_predictor(model_name, pretrained_transform)
            ms = median_latency_ms(predictor, image, args.runs, args.warmup)
            size = predictor.model.config.image_size
            params = count_parameters(predictor.model) / 1e6
            print(f"  {model_name:<9} {size:>3} px  {params:5.1f} M parameters  {ms:8.1f} ms per image")


if __name__ == "__main__":
    main()
