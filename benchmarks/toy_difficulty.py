"""How hard is the toy dataset? Colour statistics versus a tiny ViT trained from scratch on the CPU.

    python benchmarks/toy_difficulty.py [--images-per-class 500] [--epochs 5] [--out /tmp/toy_bench]

1. Logistic regression on the 6 per-channel means and standard deviations: should stay near chance
   (the toy fakes have their colour statistics matched to real crops).
2. ``vit_tiny`` (64 px, patch 8) from scratch with AdamW and a warm-up + cosine schedule, using the
   course's scratch transforms (flips + translations) and the numbers of the "scratch" recipe
   (``helpers.train.recipes``): test accuracy after every epoch, wall time and CPU time (on a busy
   machine CPU-seconds / cores is the better guide).
The loop is written out here on purpose, so this check does not depend on helpers.train.loop.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers.data.cache import folder_dataset
from helpers.data.datasets import find_images
from helpers.data.images import load_image_rgb
from helpers.data.loaders import create_dataloaders
from helpers.data.toy import make_toy_dataset
from helpers.data.transforms import scratch_transforms
from helpers.model.vit import ViT, count_parameters, get_config
from helpers.train.recipes import RECIPES

RECIPE = RECIPES["scratch"]


def channel_stats_accuracy(root: Path, seed: int = 0) -> float:
    """Test accuracy of a logistic regression on per-channel mean and std (6 features), 70/30 split."""
    samples, _ = find_images(root, check=False)
    features = []
    for path, _ in samples:
        pixels = np.asarray(load_image_rgb(path), dtype=np.float64) / 255.0  # (H, W, 3)
        features.append(np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))]))
    x = torch.tensor(np.array(features), dtype=torch.float64)  # (N, 6)
    y = torch.tensor([label for _, label in samples], dtype=torch.float64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.7 * len(y))
    train, test = order[:n_train], order[n_train:]
    mean, std = x[train].mean(0), x[train].std(0)
    x = (x - mean) / std
    weights = torch.zeros(7, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200)

    def closure():
        optimizer.zero_grad()
        logits = x[train] @ weights[:6] + weights[6]
        loss = (
            nn.functional.binary_cross_entropy_with_logits(logits, y[train]) + 1e-3 * weights[:6].pow(2).sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predictions = (x[test] @ weights[:6] + weights[6]) > 0
    return (predictions.double() == y[test]).double().mean().item()


def train_tiny_vit(root: Path, epochs: int, lr: float, batch_size: int, seed: int) -> list[dict]:
    torch.manual_seed(seed)
    train_tf, eval_tf = scratch_transforms(64)
    train_loader, _, test_loader, _ = create_dataloaders(
        root,
        train_tf,
        eval_tf,
        batch_size=batch_size,
        val_fraction=0.1,
        test_fraction=0.2,
        seed=seed,
        num_workers=0,
        dataset=folder_dataset,
    )
    model = ViT(get_config("vit_tiny"))
    print(
        f"vit_tiny: {count_parameters(model):,} parameters, {len(train_loader.dataset)} train / "
        f"{len(test_loader.dataset)} test images"
    )
    decay = [
        p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n and "token" not in n
    ]
    no_decay = [
        p
        for n, p in model.named_parameters()
        if not (p.ndim >= 2 and "embedding" not in n and "token" not in n)
    ]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": RECIPE.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
    )
    total = epochs * len(train_loader)
    warmup = round(RECIPE.warmup_epochs * len(train_loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
        ),
    )
    history, start, cpu_start = [], time.perf_counter(), time.process_time()
    for epoch in range(1, epochs + 1):
        model.train()
        for images, labels in train_loader:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), RECIPE.grad_clip)
            optimizer.step()
            schedule.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += (model(images).argmax(1) == labels).sum().item()
        accuracy = correct / len(test_loader.dataset)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        history.append({"epoch": epoch, "test_accuracy": accuracy, "seconds": wall, "cpu_seconds": cpu})
        print(
            f"epoch {epoch}: last batch loss {loss.item():.3f}, test accuracy {accuracy:.3f}, "
            f"{wall:.0f} s wall, {cpu:.0f} CPU-seconds over all threads"
        )
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-per-class", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--lr", type=float, default=RECIPE.lr, help="peak learning rate (the scratch recipe's)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/toy_bench"))
    args = parser.parse_args()
    kwargs = {} if args.images_per_class is None else {"images_per_class": args.images_per_class}
    start = time.perf_counter()
    root = make_toy_dataset(args.out, seed=args.seed, **kwargs)
    print(f"toy dataset at {root}: {time.perf_counter() - start:.2f} s (0 s if it was already there)")
    print(f"logistic regression on per-channel mean/std: test accuracy {channel_stats_accuracy(root):.3f}")
    train_tiny_vit(root, args.epochs, args.lr, args.batch_size, args.seed)


if __name__ == "__main__":
    main()
