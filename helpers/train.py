"""Train a fake-versus-real ViT detector from the command line.

    python -m helpers.train --data data/toy --model vit_tiny --recipe scratch --out build/tiny
    python -m helpers.train --data data/fake_or_real --model vit_b16 --recipe linear_probe --out build/probe
    python -m helpers.train --data data/fake_or_real --model vit_b16 --recipe finetune --out build/finetune

``--recipe`` names one of :data:`helpers.recipes.RECIPES`: ``scratch`` (and ``tutorial``) train
every weight from random initialisation (``vit_tiny`` or ``vit_b16``); ``linear_probe`` and
``finetune`` start from torchvision's ImageNet ViT-B/16 (``--model vit_b16``) and train only the new
head (on cached features) or every layer. Each setting flag (``--lr``, ``--epochs``, ...) replaces
that field of the recipe.

The folder ``--out`` receives ``metrics.json`` (the recipe, settings, history, best epoch,
validation and test metrics, speed), ``detector/`` (``model.safetensors`` + ``config.json``, for
``helpers.inference.load_predictor`` and the demo) and ``training_state/`` (to continue with
``--resume`` after an interruption; see ``helpers.training_state``).

Several GPUs: ``torchrun --nproc_per_node=4 -m helpers.train ...`` runs one process per GPU with
DistributedDataParallel (``--batch-size`` is per process). The distributed parts are the
``_distributed_*`` functions at the end of this file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from helpers import engine, files, pretrained, transforms
from helpers.datasets import create_dataloaders
from helpers.evaluation import PRECISIONS
from helpers.inference import DETECTOR_DIR, save_detector
from helpers.recipes import RECIPES, Recipe, get_recipe
from helpers.vit import ViT, get_config

MODELS = ("vit_tiny", "vit_b16")
DEFAULT_IMAGE_SIZE = {"vit_tiny": 64, "vit_b16": 224}
# The flags that replace a field of the recipe: (flag, field, type, help).
RECIPE_FLAGS = (
    ("--epochs", "epochs", int, "passes over the training set"),
    ("--batch-size", "batch_size", int, "images per step and process"),
    ("--lr", "lr", float, "peak learning rate"),
    ("--weight-decay", "weight_decay", float, "weight decay"),
    ("--warmup-epochs", "warmup_epochs", float, "linear warm-up; with --epochs, at most epochs / 10"),
    ("--label-smoothing", "label_smoothing", float, "label smoothing"),
    ("--grad-clip", "grad_clip", float, "max gradient norm, 0 = off"),
    ("--backbone-lr-scale", "backbone_lr_scale", float, "backbone learning rate = lr x this"),
    ("--optimizer", "optimizer", str, "adamw or adam"),
    ("--schedule", "schedule", str, "warmup_cosine or constant"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.train",
        description=__doc__.split("\n\n")[0],
        epilog="Recipe settings left out take the values of the --recipe (listed in each help line).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="image folder with fake_images/ and real_images/ (e.g. data/toy)",
    )
    parser.add_argument("--model", choices=MODELS, default="vit_tiny", help="ViT size (default: vit_tiny)")
    parser.add_argument(
        "--recipe", choices=sorted(RECIPES), default="scratch", help="how to train (default: scratch)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/MODEL-RECIPE)")
    for flag, field, kind, text in RECIPE_FLAGS:
        defaults = ", ".join(f"{name} {getattr(recipe, field)}" for name, recipe in RECIPES.items())
        parser.add_argument(flag, dest=field, type=kind, help=f"{text} ({defaults})")
    parser.add_argument(
        "--image-size",
        type=int,
        help="side in pixels, a multiple of the patch size (vit_tiny 64, vit_b16 224)",
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
        choices=sorted(PRECISIONS),
        default="fp32",
        help="numeric format: bf16/fp16 use autocast; fp16 needs a GPU (default: fp32)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader worker processes (default: helpers.datasets.default_num_workers())",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/training_state if it exists")
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="linear_probe/finetune: go on with RANDOM weights when the ImageNet weights "
        "cannot be found or downloaded (small mode only: the results mean little)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The ``--recipe`` with every setting given on the command line put in its place."""
    base = RECIPES[args.recipe]
    overrides: dict[str, Any] = {
        field: getattr(args, field) for _, field, _, _ in RECIPE_FLAGS if getattr(args, field) is not None
    }
    if "epochs" in overrides and "warmup_epochs" not in overrides:  # short runs: warm up a tenth of them
        overrides["warmup_epochs"] = min(base.warmup_epochs, overrides["epochs"] / 10)
    if overrides.get("grad_clip") == 0:
        overrides["grad_clip"] = None
    return get_recipe(args.recipe, **overrides)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; ``args.recipe`` becomes a :class:`Recipe`. Errors exit
    with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.recipe = recipe_from_args(args)
    except ValueError as err:  # e.g. "recipe 'scratch': epochs must be an integer >= 1, got 0"
        flag = next((f for f, field, _, _ in RECIPE_FLAGS if f": {field} must" in str(err)), "--recipe")
        parser.error(f"{flag}: {err}")
    recipe = args.recipe
    if args.image_size is None:
        args.image_size = DEFAULT_IMAGE_SIZE[args.model]
    if args.out is None:
        args.out = Path("build") / f"{args.model}-{recipe.name}"

    if recipe.pretrained and args.model != "vit_b16":
        parser.error(
            f"--recipe {recipe.name} starts from ImageNet weights, which exist only for --model vit_b16 "
            f"(got --model {args.model}); use --recipe scratch to train {args.model}."
        )
    patch = get_config(args.model).patch_size
    if args.image_size < patch or args.image_size % patch:
        parser.error(
            f"--image-size {args.image_size} must be a positive multiple of {args.model}'s "
            f"patch size {patch} (e.g. {max(patch, round(args.image_size / patch) * patch)})."
        )
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
    if not recipe.train_backbone and _distributed_world_size() > 1:
        parser.error(
            f"--recipe {recipe.name} trains one linear layer on cached features; run it in a single "
            "process (python -m helpers.train), not under torchrun."
        )
    return args


def build_model(args: argparse.Namespace, num_classes: int) -> tuple[ViT, str]:
    """The model for ``args.recipe`` and where its weights came from ("random init", "ImageNet", ...)."""
    recipe = args.recipe
    if not recipe.pretrained:
        return ViT(get_config(args.model, image_size=args.image_size, num_classes=num_classes)), "random init"
    model = pretrained.load_pretrained_vit_b16(
        num_classes, args.image_size, allow_random=args.allow_random_weights
    )
    origin = (
        "ImageNet" if pretrained.weights_cache_path().is_file() else "RANDOM (ImageNet weights unavailable)"
    )
    return pretrained.freeze_for_recipe(model, recipe), origin


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
    recipe: Recipe = args.recipe
    start = time.perf_counter()
    device, rank, world_size = _distributed_setup(args.device)
    progress = not args.no_progress and rank == 0
    try:
        engine.set_seed(args.seed)
        if recipe.pretrained:
            train_tf, eval_tf = transforms.pretrained_transforms(args.image_size)
        else:
            train_tf, eval_tf = transforms.scratch_transforms(args.image_size)
        if not recipe.train_backbone:
            train_tf = eval_tf  # features are computed once, so no random augmentation
        try:
            train_loader, val_loader, test_loader, class_names = create_dataloaders(
                args.data,
                train_tf,
                eval_tf,
                batch_size=recipe.batch_size,
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
            parameters = sum(p.numel() for p in model.parameters())
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(
                f"{args.model} ({origin}), recipe {recipe.name}, "
                f"{parameters:,} parameters ({trainable:,} trainable); "
                f"{len(train_loader.dataset)} train / {len(val_loader.dataset)} val / "
                f"{len(test_loader.dataset) if test_loader else 0} test images; device {device}"
                + (f" x {world_size} processes" if world_size > 1 else ""),
                flush=True,
            )
        run = engine.fit if recipe.train_backbone else engine.fit_linear_probe
        result = run(
            model,
            train_loader,
            val_loader,
            recipe,
            device=device,
            test_loader=test_loader,
            precision=args.precision,
            seed=args.seed,
            out_dir=args.out,
            resume=args.resume,
            progress=progress,
        )
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
    """``metrics.json``, and the detector (``model.safetensors`` + ``config.json``) in ``detector/``."""
    out, recipe = Path(args.out), args.recipe
    out.mkdir(parents=True, exist_ok=True)
    spec = transforms.eval_transform_spec(args.image_size, pretrained=recipe.pretrained)
    detector = save_detector(
        model,
        out / DETECTOR_DIR,
        class_names,
        spec,
        model_name=args.model,
        extra={"recipe": recipe.name, "weights": origin},
    )
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "recipe"}
    metrics = {
        "recipe": recipe.to_dict(),
        "settings": {k: v for k, v in settings.items() if k not in recipe.to_dict()},
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
    path = files.write_json(out / "metrics.json", metrics)
    test = result["test"] or result["val"]
    which = "test" if result["test"] else "val"
    print(
        f"best epoch {result['best_epoch']}: {which} accuracy {test['accuracy']:.1%}, F1 {test['f1']:.3f}; "
        f"{result['train_images_per_second']:.0f} train images/s; {seconds:.0f} s in all. "
        f"Wrote {path} and the detector in {detector}."
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


def _distributed_cleanup(world_size: int) -> None:
    if world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
