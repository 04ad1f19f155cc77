"""Train a fake-versus-real ViT detector from the command line.

    python -m helpers.train --data data/toy --model vit_tiny --mode scratch --out build/tiny
    python -m helpers.train --data data/fake_or_real --model vit_b16 --mode linear_probe --out build/probe
    python -m helpers.train --data data/fake_or_real --model vit_b16 --mode finetune --out build/finetune

Modes: ``scratch`` trains every weight from random initialisation (``vit_tiny`` or ``vit_b16``);
``linear_probe`` and ``finetune`` start from torchvision's ImageNet ViT-B/16 (``--model vit_b16``)
and train only the new head (on cached features) or every layer.

The folder ``--out`` receives ``metrics.json`` (settings, history, best epoch, validation and test
metrics, speed), ``model.safetensors`` + ``config.json`` (the detector, for
``helpers.inference.load_predictor`` and the demo) and ``checkpoint/`` (to continue with
``--resume`` after an interruption).

Several GPUs: ``torchrun --nproc_per_node=4 -m helpers.train ...`` runs one process per GPU with
DistributedDataParallel (``--batch-size`` is per process). The distributed parts are the
``_distributed_*`` functions at the end of this file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from helpers import data, engine, pretrained
from helpers.inference import save_for_inference
from helpers.vit import ViT, get_config

MODELS = ("vit_tiny", "vit_b16")
MODES = ("scratch", "linear_probe", "finetune")
# Per-mode defaults for the settings left out on the command line. "scratch" is tuned for
# vit_tiny on the toy set (>= 90 % test accuracy in a few CPU minutes). The pretrained modes follow
# the usual transfer-learning recipes: Adam's usual 1e-3 for a lone linear head; for fine-tuning
# 3e-4 for the new head and a tenth of it, 3e-5, for the pretrained backbone (DeiT's fine-tuning
# rate 5e-4 x batch / 512 at batch 32).
DEFAULTS: dict[str, dict[str, Any]] = {
    "scratch": dict(
        epochs=10,
        batch_size=64,
        lr=1e-3,
        weight_decay=0.05,
        warmup_epochs=1,
        label_smoothing=0.1,
        grad_clip=1.0,
    ),
    "linear_probe": dict(
        epochs=10,
        batch_size=32,
        lr=1e-3,
        weight_decay=0.0,
        warmup_epochs=0,
        label_smoothing=0.0,
        grad_clip=None,
    ),
    "finetune": dict(
        epochs=3,
        batch_size=32,
        lr=3e-4,
        weight_decay=0.05,
        warmup_epochs=0.5,
        label_smoothing=0.1,
        grad_clip=1.0,
    ),
}
DEFAULT_IMAGE_SIZE = {"vit_tiny": 64, "vit_b16": 224}


def build_parser() -> argparse.ArgumentParser:
    def defaults_of(key: str) -> str:
        return ", ".join(f"{mode} {values[key]}" for mode, values in DEFAULTS.items())

    parser = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description=__doc__.split("\n\n")[0],
        epilog="Settings without a value take the defaults of the --mode (listed in each help line).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="image folder with fake_images/ and real_images/ (e.g. data/toy)",
    )
    parser.add_argument("--model", choices=MODELS, default="vit_tiny", help="ViT size (default: vit_tiny)")
    parser.add_argument("--mode", choices=MODES, default="scratch", help="what to train (default: scratch)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/MODEL-MODE)")
    parser.add_argument("--epochs", type=int, help=f"passes over the training set ({defaults_of('epochs')})")
    parser.add_argument(
        "--batch-size", type=int, help=f"images per step and process ({defaults_of('batch_size')})"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        help="side in pixels, a multiple of the patch size (vit_tiny 64, vit_b16 224)",
    )
    parser.add_argument("--lr", type=float, help=f"peak learning rate of AdamW ({defaults_of('lr')})")
    parser.add_argument(
        "--weight-decay", type=float, help=f"AdamW weight decay ({defaults_of('weight_decay')})"
    )
    parser.add_argument(
        "--warmup-epochs",
        type=float,
        help=f"linear warm-up ({defaults_of('warmup_epochs')}, at most a tenth of --epochs)",
    )
    parser.add_argument("--label-smoothing", type=float, help=f"({defaults_of('label_smoothing')})")
    parser.add_argument(
        "--grad-clip", type=float, help=f"max gradient norm, 0 = off ({defaults_of('grad_clip')})"
    )
    parser.add_argument(
        "--backbone-lr-scale",
        type=float,
        default=0.1,
        help="finetune: backbone learning rate = lr x this (default: 0.1)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed of the split, initialisation and shuffling"
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of each class for validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of each class for the test")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto = the GPU if there is one (default: auto)",
    )
    parser.add_argument(
        "--precision",
        choices=sorted(engine.PRECISIONS),
        default="fp32",
        help="bf16/fp16 use autocast; fp16 needs a GPU (default: fp32)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader worker processes (default: helpers.data.default_num_workers())",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if it exists")
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="linear_probe/finetune: go on with RANDOM weights when the ImageNet weights "
        "cannot be found or downloaded (small mode only: the results mean little)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; fill the per-mode defaults. Errors exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs is not None and args.warmup_epochs is None:  # short runs: warm up for a tenth of them
        args.warmup_epochs = min(DEFAULTS[args.mode]["warmup_epochs"], args.epochs / 10)
    for key, value in DEFAULTS[args.mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.image_size is None:
        args.image_size = DEFAULT_IMAGE_SIZE[args.model]
    if args.out is None:
        args.out = Path("build") / f"{args.model}-{args.mode}"
    if args.grad_clip == 0:
        args.grad_clip = None

    if args.mode != "scratch" and args.model != "vit_b16":
        parser.error(
            f"--mode {args.mode} starts from ImageNet weights, which exist only for --model vit_b16 "
            f"(got --model {args.model}); use --mode scratch to train {args.model}."
        )
    patch = get_config(args.model).patch_size
    if args.image_size < patch or args.image_size % patch:
        parser.error(
            f"--image-size {args.image_size} must be a positive multiple of {args.model}'s "
            f"patch size {patch} (e.g. {max(patch, round(args.image_size / patch) * patch)})."
        )
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.warmup_epochs <= args.epochs:
        parser.error(
            f"--warmup-epochs must be between 0 and --epochs ({args.epochs}), got {args.warmup_epochs}"
        )
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    if not 0 < args.val_fraction < 1 or not 0 <= args.test_fraction < 1:
        parser.error(
            f"need 0 < --val-fraction < 1 and 0 <= --test-fraction < 1, got {args.val_fraction} "
            f"and {args.test_fraction}"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible; use --device cpu (or auto)")
    if args.precision == "fp16" and (args.device == "cpu" or not torch.cuda.is_available()):
        parser.error("--precision fp16 needs a CUDA GPU; on a CPU use bf16 or fp32")
    if not args.data.is_dir():
        parser.error(
            f"--data {args.data}: no such folder. It should hold fake_images/ and real_images/; "
            "make the toy set with `python -m helpers.data make-toy --out data/toy`."
        )
    if args.mode == "linear_probe" and _distributed_world_size() > 1:
        parser.error(
            "--mode linear_probe trains one linear layer on cached features; run it in a single "
            "process (python -m helpers.train), not under torchrun."
        )
    return args


def build_model(args: argparse.Namespace, num_classes: int) -> tuple[ViT, str]:
    """The model for ``args.mode`` and where its weights came from ("random init", "ImageNet", ...)."""
    if args.mode == "scratch":
        return ViT(get_config(args.model, image_size=args.image_size, num_classes=num_classes)), "random init"
    model = pretrained.load_pretrained_vit_b16(
        num_classes, args.image_size, allow_random=args.allow_random_weights
    )
    origin = (
        "ImageNet" if pretrained.weights_cache_path().is_file() else "RANDOM (ImageNet weights unavailable)"
    )
    return pretrained.prepare_for_mode(model, args.mode), origin


def repeatable_train_loader(
    loader: DataLoader, seed: int, sampler: DistributedSampler | None = None
) -> DataLoader:
    """The train loader, rebuilt so that every epoch's randomness can be re-seeded by ``engine.fit``.

    Persistent workers would carry their random state from one epoch to the next; new workers per
    epoch take their seeds from the loader's generator, which ``fit`` re-seeds from (seed, epoch),
    so a resumed run repeats the same augmentation. Under DDP the ``sampler`` shards and shuffles.
    """
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
        num_workers=loader.num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    device, rank, world_size = _distributed_setup(args.device)
    progress = not args.no_progress and rank == 0
    try:
        engine.set_seed(args.seed)
        pretrained_mode = args.mode != "scratch"
        if pretrained_mode:
            train_tf, eval_tf = data.pretrained_transforms(args.image_size)
        else:
            train_tf, eval_tf = data.scratch_transforms(args.image_size)
        if args.mode == "linear_probe":
            train_tf = eval_tf  # features are computed once, so no random augmentation
        try:
            train_loader, val_loader, test_loader, class_names = data.create_dataloaders(
                args.data,
                train_tf,
                eval_tf,
                batch_size=args.batch_size,
                val_fraction=args.val_fraction,
                test_fraction=args.test_fraction,
                seed=args.seed,
                num_workers=args.num_workers,
            )
        except ValueError as err:  # a folder without two classes of images, too few images per class
            print(f"error: {err}", file=sys.stderr)
            return 1
        sampler = _distributed_sampler(train_loader.dataset, rank, world_size, args.seed)
        train_loader = repeatable_train_loader(train_loader, args.seed, sampler)
        if len(test_loader.dataset) == 0:
            test_loader = None

        try:
            model, origin = build_model(args, len(class_names))
        except pretrained.PretrainedWeightsUnavailable as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        if rank == 0:
            print(
                f"{args.model} ({origin}), mode {args.mode}, {sum(p.numel() for p in model.parameters()):,} "
                f"parameters ({sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable); "
                f"{len(train_loader.dataset)} train / {len(val_loader.dataset)} val / "
                f"{len(test_loader.dataset) if test_loader else 0} test images; device {device}"
                + (f" x {world_size} processes" if world_size > 1 else ""),
                flush=True,
            )
        settings = dict(
            epochs=args.epochs,
            lr=args.lr,
            device=device,
            test_loader=test_loader,
            weight_decay=args.weight_decay,
            warmup_epochs=args.warmup_epochs,
            label_smoothing=args.label_smoothing,
            grad_clip=args.grad_clip,
            precision=args.precision,
            seed=args.seed,
            out_dir=args.out,
            resume=args.resume,
            progress=progress,
        )
        if args.mode == "linear_probe":
            result = engine.fit_linear_probe(model, train_loader, val_loader, **settings)
        else:
            groups = None
            if args.mode == "finetune":
                groups = pretrained.finetune_param_groups(
                    model, args.lr, args.weight_decay, args.backbone_lr_scale
                )
            trained = _distributed_wrap(model.to(device), device, world_size)
            result = engine.fit(trained, train_loader, val_loader, param_groups=groups, **settings)

        if rank == 0:
            write_outputs(args, model, result, class_names, origin, world_size, time.perf_counter() - start)
    finally:
        _distributed_cleanup(world_size)
    return 0


def write_outputs(
    args: argparse.Namespace,
    model: ViT,
    result: dict[str, Any],
    class_names: list[str],
    origin: str,
    world_size: int,
    seconds: float,
) -> None:
    """``metrics.json``, and ``model.safetensors`` + ``config.json`` via ``save_for_inference``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = data.eval_transform_spec(args.image_size, pretrained=args.mode != "scratch")
    save_for_inference(
        model, out, class_names, spec, model_name=args.model, extra={"mode": args.mode, "weights": origin}
    )
    metrics = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "history": result["history"],
        "best_epoch": result["best_epoch"],
        "val": result["val"],
        "test": result["test"],
        "class_names": list(class_names),
        "weights": origin,
        "world_size": world_size,
        "seconds": seconds,
        "train_images_per_second": result["train_images_per_second"],
    }
    path = out / "metrics.json"
    path.with_name("metrics.json.tmp").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    os.replace(path.with_name("metrics.json.tmp"), path)
    test = result["test"] or result["val"]
    which = "test" if result["test"] else "val"
    print(
        f"best epoch {result['best_epoch']}: {which} accuracy {test['accuracy']:.1%}, F1 {test['f1']:.3f}; "
        f"{result['train_images_per_second']:.0f} train images/s; {seconds:.0f} s in all. Wrote {path}, "
        f"{out / 'model.safetensors'} and {out / 'config.json'}."
    )


# ---------------------------------------------------------------------------------------------
# DDP: one process per GPU under torchrun (RANK, WORLD_SIZE and LOCAL_RANK in the environment)
# ---------------------------------------------------------------------------------------------


def _distributed_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _distributed_setup(device_arg: str) -> tuple[torch.device, int, int]:
    """``(device, rank, world_size)``; under torchrun also joins the process group."""
    world_size = _distributed_world_size()
    use_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    if world_size == 1:
        return torch.device("cuda" if use_cuda else "cpu"), 0, 1
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"), dist.get_rank(), world_size


def _distributed_sampler(dataset, rank: int, world_size: int, seed: int) -> DistributedSampler | None:
    """Each process trains on its own 1/world_size of the shuffled training set."""
    if world_size == 1:
        return None
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)


def _distributed_wrap(model: torch.nn.Module, device: torch.device, world_size: int) -> torch.nn.Module:
    """Wrap in DistributedDataParallel, which averages the gradients of all processes every step."""
    if world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _distributed_cleanup(world_size: int) -> None:
    if world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
