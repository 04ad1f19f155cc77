"""Linear probe: cached features versus a full forward pass through the frozen backbone every epoch.

The source tutorial trains the new head of a frozen ViT-B/16 by running every image through all 12
frozen blocks in every epoch. The backbone's output never changes, so ``helpers.train.probe.fit_linear_probe``
runs it once, caches the [class]-token features, and trains the head on them. Both train the same
head on the same batches in the same order; this script times the two and checks that they agree.

    python benchmarks/linear_probe.py                      # ViT-B/16 at 64 px on the toy set, 3 epochs
    python benchmarks/linear_probe.py --image-size 224 --epochs 5 --device cuda

Without the ImageNet weights in the torch hub cache the backbone has random weights (announced
loudly): the timings are what this benchmark is about, the accuracies then mean little.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from helpers import course
from helpers.data.cache import folder_dataset
from helpers.data.loaders import create_dataloaders
from helpers.data.toy import make_toy_dataset
from helpers.data.transforms import pretrained_transforms
from helpers.model import pretrained
from helpers.model.vit import ViT, get_config
from helpers.train import loop, probe
from helpers.train.recipes import get_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="image folder (default: a toy set with --images-per-class per class)",
    )
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--model", choices=("vit_b16", "vit_tiny"), default="vit_b16")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the linear_probe recipe's")
    parser.add_argument("--lr", type=float, default=None, help="default: the linear_probe recipe's")
    parser.add_argument("--device", default=str(course.pick_device()))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or make_toy_dataset(Path(tmp) / "toy", images_per_class=args.images_per_class)
        loop.set_seed(0)
        if args.model == "vit_b16":
            backbone = pretrained.load_pretrained_vit_b16(2, args.image_size, allow_random=True)
        else:
            backbone = ViT(get_config("vit_tiny", image_size=args.image_size, num_classes=2))
        backbone.requires_grad_(False)
        backbone.head.requires_grad_(True)
        _, eval_tf = pretrained_transforms(args.image_size)
        given = {"lr": args.lr, "batch_size": args.batch_size}
        recipe = get_recipe(
            "linear_probe", epochs=args.epochs, **{k: v for k, v in given.items() if v is not None}
        )
        settings = dict(device=device, seed=0, progress=False)

        def make_loaders():
            return create_dataloaders(
                folder, eval_tf, eval_tf, batch_size=recipe.batch_size, num_workers=0, dataset=folder_dataset
            )

        train, val, test, _ = make_loaders()
        print(
            f"{args.model} at {args.image_size} px, {len(train.dataset)} train / {len(val.dataset)} val / "
            f"{len(test.dataset)} test images, {args.epochs} epochs, device {device}"
        )

        full_model = copy.deepcopy(backbone)
        start = time.perf_counter()
        full = loop.fit(full_model, train, val, recipe, test_loader=test, **settings)
        full_seconds = time.perf_counter() - start

        train, val, test, _ = make_loaders()
        probe_model = copy.deepcopy(backbone)
        start = time.perf_counter()
        cached = probe.fit_linear_probe(probe_model, train, val, recipe, test_loader=test, **settings)
        cached_seconds = time.perf_counter() - start

    difference = (probe_model.head.weight - full_model.head.weight).abs().max().item()
    print(
        f"full forward every epoch (the tutorial's way): {full_seconds:7.1f} s, "
        f"test accuracy {full['test']['accuracy']:.1%}"
    )
    print(
        f"cached features (fit_linear_probe):            {cached_seconds:7.1f} s, "
        f"test accuracy {cached['test']['accuracy']:.1%} (features: {cached['feature_seconds']:.1f} s)"
    )
    print(
        f"speed-up: {full_seconds / cached_seconds:.1f}x; "
        f"largest difference between the two heads: {difference:.1e}"
    )


if __name__ == "__main__":
    main()
