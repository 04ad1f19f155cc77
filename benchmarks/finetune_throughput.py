"""Fine-tuning speed of ViT-B/16 at 224 px in each precision, with and without ``torch.compile``.

    python benchmarks/finetune_throughput.py           # on a GPU: ViT-B/16, 224 px, batch 64 (3-4 min)
    python benchmarks/finetune_throughput.py --tiny    # on any CPU: a 1-block ViT at 32 px, to try it out

Model-bound on purpose: every step trains on the same random batch, already on the device, so the
loader plays no part (``benchmarks/data_loading.py`` measures the feed). A step is exactly what
``python -m helpers.train`` runs (:func:`helpers.train.loop.train_one_epoch`: autocast forward,
cross-entropy, backward with the fp16 gradient scaler, gradient clipping, AdamW), with the
``finetune`` recipe's settings. The settings, each on a fresh model:

- ``fp32``: fp32 with TF32 off (``torch.set_float32_matmul_precision("highest")``), the reference;
- ``tf32``: fp32 weights, matrix products on TF32 tensor cores (what the CLI allows on a GPU);
- ``bf16`` and ``fp16``: autocast (``--precision``), TF32 allowed as in the CLI; bf16 only where the
  GPU has bf16 units;
- each of tf32, bf16 and fp16 also compiled (``model.compile()``, as ``--compile`` does).

On a CPU the rows are fp32 and bf16, eager and compiled. For each setting the table shows the
seconds of the ``--warmup`` first steps (compilation happens there), the images per second over the
next ``--steps`` steps, the ratio to fp32, and for a compiled setting after how many steps its
compilation has paid for itself. Compilation starts from an empty cache (a new
``TORCHINDUCTOR_CACHE_DIR``), as on a fresh Colab runtime; ``--warm-cache`` keeps inductor's own,
where a second run finds the kernels it compiled before. ``--budget`` seconds (default 220) stops
before a setting that would start after it, so the whole run stays within about 4 minutes on an H100.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from helpers.model.vit import ViT, get_config  # noqa: E402
from helpers.train import loop  # noqa: E402
from helpers.train.precision import make_scaler, native_bf16  # noqa: E402
from helpers.train.recipes import get_recipe, make_optimizer  # noqa: E402


def settings(device: torch.device) -> list[tuple[str, bool]]:
    """``(precision, compiled)`` pairs to measure on ``device``, the fp32 reference first."""
    if device.type == "cpu":
        return [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]
    half = ["bf16", "fp16"] if native_bf16(device) else ["fp16"]
    return [("fp32", False), ("tf32", False), *[(p, False) for p in half]] + [
        (p, True) for p in ["tf32", *half]
    ]


def measure(
    config, precision: str, compiled: bool, device: torch.device, batch: int, warmup: int, steps: int
) -> tuple[float, float]:
    """``(seconds of the first `warmup` steps, images per second over the next `steps`)``."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("highest" if precision == "fp32" else "high")  # as the CLI
    autocast = "fp32" if precision == "tf32" else precision
    torch.manual_seed(0)
    model = ViT(config).to(device)
    if compiled:
        model.compile()
    recipe = get_recipe("finetune")
    optimizer = make_optimizer(model, recipe)
    images = torch.randn(batch, 3, config.image_size, config.image_size, device=device)  # (B, 3, H, W)
    labels = torch.randint(0, config.num_classes, (batch,), device=device)  # (B,)
    options = dict(
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        device=device,
        scaler=make_scaler(device, autocast),
        grad_clip=recipe.grad_clip,
        precision=autocast,
        progress=False,
    )
    start = time.perf_counter()
    loop.train_one_epoch(model, [(images, labels)] * warmup, **options)  # waits for the GPU at its end
    first = time.perf_counter() - start
    timed = loop.train_one_epoch(model, [(images, labels)] * steps, **options)
    return first, timed["images"] / timed["seconds"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 1-block ViT at 32 px, batch 8: for a CPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64, --tiny 8")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (compilation)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 30, --tiny 10)")
    parser.add_argument("--budget", type=float, default=220, help="start no setting after this many seconds")
    parser.add_argument("--warm-cache", action="store_true", help="keep inductor's on-disk cache of kernels")
    args = parser.parse_args(argv)
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        config = get_config("vit_b16", image_size=32, depth=1, dim=64, heads=2, mlp_dim=128, num_classes=2)
    else:
        config = get_config("vit_b16", num_classes=2)
    batch = args.batch_size or (8 if args.tiny else 64)
    steps = args.steps or (10 if args.tiny else 30)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{'tiny ViT' if args.tiny else 'ViT-B/16'}, {config.image_size} px, batch {batch}, {where}, "
        f"torch {torch.__version__}: fine-tuning images/s on synthetic batches "
        f"({args.warmup} first steps, then {steps} timed)"
    )
    print(
        f"{'precision':<10}{'compiled':<10}{'first steps':>12}{'images/s':>10}{'vs fp32':>9}"
        "  compiling pays after"
    )
    start, rows = time.perf_counter(), {}
    for precision, compiled in settings(device):
        if time.perf_counter() - start > args.budget:
            skipped = f"skipped: {args.budget:.0f} s (--budget) spent"
            print(f"{precision:<10}{'yes' if compiled else 'no':<10}  {skipped}")
            continue
        first, rate = measure(config, precision, compiled, device, batch, args.warmup, steps)
        rows[precision, compiled] = first, rate
        reference = rows["fp32", False][1]
        pays = ""
        if compiled and (precision, False) in rows:
            eager_first, eager_rate = rows[precision, False]
            saved_per_step = batch / eager_rate - batch / rate  # seconds
            overhead = first - eager_first
            pays = f"{overhead / saved_per_step:,.0f} steps" if saved_per_step > 0 else "never (no faster)"
        print(
            f"{precision:<10}{'yes' if compiled else 'no':<10}{first:>11.1f}s{rate:>10.1f}"
            f"{rate / reference:>8.2f}x  {pays}"
        )
    (best_precision, best_compiled), (_, best_rate) = max(rows.items(), key=lambda item: item[1][1])
    eager = rows.get((best_precision, False), (None, best_rate))[1]
    print(
        f"fastest: {best_precision}{' compiled' if best_compiled else ''}, {best_rate:.1f} images/s = "
        f"{best_rate / rows['fp32', False][1]:.2f}x fp32 and {best_rate / eager:.2f}x {best_precision} eager"
    )


if __name__ == "__main__":
    main()
