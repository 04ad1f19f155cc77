"""Latency of one prediction as the demo makes it, in fp32 and in bf16, side by side in one run.

    python benchmarks/inference_latency.py [--runs 20] [--warmup 3] [--threads N] [--images 16]

Each run is ``Predictor.predict(path)`` on one 640x480 JPEG: decode, eval transform (resize, centre
crop, normalise), the ViT's forward pass and the softmax, for ViT-B/16 (224 px) and vit_tiny (64 px)
on the CPU. The fp32 and bf16 predictors share their weights and are timed in turn (fp32, bf16,
fp32, ...), so a busy machine slows both alike; the medians and their ratio are what to compare.
Weights are random (latency does not depend on their values), with a random head so that the two
classes get different probabilities; ``--images`` other JPEGs are classified by both predictors to
compare their labels and probabilities.

The last line is the ViT-B/16 ratio: ``bf16 speed-up over fp32: X.XXx (same label on N/N images,
max prob diff D)``. On a CPU without bf16 instructions it says so instead, with what
``precision="auto"`` picks there (fp32) and the ratio of emulated bf16.
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

from helpers.data.datasets import CLASS_NAMES  # noqa: E402
from helpers.data.transforms import build_eval_transform, eval_transform_spec  # noqa: E402
from helpers.model.vit import ViT, count_parameters, get_config  # noqa: E402
from helpers.serving.inference import Predictor  # noqa: E402
from helpers.train.precision import native_bf16, resolve_precision  # noqa: E402


def median_latencies_ms(predictors: list[Predictor], image: Path, runs: int, warmup: int) -> list[float]:
    """Median wall-clock milliseconds of ``p.predict(image)`` for each predictor, timed in turn."""
    for _ in range(warmup):
        for predictor in predictors:
            predictor.predict(image)
    times: list[list[float]] = [[] for _ in predictors]
    for _ in range(runs):
        for predictor, measured in zip(predictors, times, strict=True):
            start = time.perf_counter()
            predictor.predict(image)
            measured.append(time.perf_counter() - start)
    return [1000 * statistics.median(measured) for measured in times]


def random_predictors(model_name: str, pretrained_transform: bool) -> tuple[Predictor, Predictor]:
    """The model the demo would load for ``model_name`` (random weights, a random head), as an fp32
    and a bf16 predictor sharing the same weights, on the CPU."""
    torch.manual_seed(0)
    config = get_config(model_name, num_classes=len(CLASS_NAMES))
    spec = eval_transform_spec(config.image_size, pretrained=pretrained_transform)
    model = ViT(config).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)  # a zero head says 50/50 to every image
    saved = {"model_name": model_name, "vit_config": config.to_dict(), "transform": spec}
    cpu = torch.device("cpu")
    return tuple(
        Predictor(model, build_eval_transform(spec), list(CLASS_NAMES), saved, cpu, precision)
        for precision in ("fp32", "bf16")
    )


def photo(path: Path, seed: int) -> Path:
    """A 640x480 JPEG of smooth colours and noise (compresses like a photograph)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640]
    pixels = 127 + 90 * np.sin(x / (20 + seed) + y / 31 + seed)[..., None] + rng.normal(0, 20, (480, 640, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed predictions per model and precision")
    parser.add_argument("--warmup", type=int, default=3, help="untimed predictions first")
    parser.add_argument("--images", type=int, default=16, help="images whose labels are compared")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    native = native_bf16("cpu")
    auto = resolve_precision("auto", "cpu", inference=True)
    flags = [name for name in ("avx512_bf16", "amx_bf16", "bf16") if torch.cpu.get_capabilities().get(name)]
    with tempfile.TemporaryDirectory() as tmp:
        images = [photo(Path(tmp) / f"photo{i}.jpg", seed=i) for i in range(args.images + 1)]
        timed, compared = images[0], images[1:]
        print(
            f"CPU latency of one prediction, median of {args.runs} runs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; bf16 instructions: {', '.join(flags) or 'none'}; "
            f"precision='auto' picks {auto} here"
        )
        # ViT-B/16 is fine-tuned from ImageNet weights, so its detector records the ImageNet eval transform.
        for model_name, pretrained_transform in (("vit_tiny", False), ("vit_b16", True)):
            fp32, bf16 = random_predictors(model_name, pretrained_transform)
            fp32_ms, bf16_ms = median_latencies_ms([fp32, bf16], timed, args.runs, args.warmup)
            exact, rounded = fp32.predict_batch(compared), bf16.predict_batch(compared)  # (N, 2) each
            same = int((exact.argmax(dim=1) == rounded.argmax(dim=1)).sum())
            diff = (exact - rounded).abs().max().item()
            size, params = fp32.model.config.image_size, count_parameters(fp32.model) / 1e6
            print(
                f"  {model_name:<9} {size:>3} px {params:5.1f} M parameters: fp32 {fp32_ms:7.1f} ms, "
                f"bf16 {bf16_ms:7.1f} ms per image ({fp32_ms / bf16_ms:.2f}x); same label on "
                f"{same}/{len(compared)} images, max prob diff {diff:.4f}"
            )
    agreement = f"same label on {same}/{len(compared)} images, max prob diff {diff:.3f}"
    if native:
        print(f"bf16 speed-up over fp32: {fp32_ms / bf16_ms:.2f}x ({agreement})")
    else:
        print(
            f"no native bf16 on this CPU: precision='auto' runs {auto} (emulated bf16 would be "
            f"{fp32_ms / bf16_ms:.2f}x fp32's speed; {agreement})"
        )


if __name__ == "__main__":
    main()
