"""Train a fake-versus-real ViT detector from the command line.

    python -m helpers.train --data data/toy --model vit_tiny --recipe scratch --out build/tiny
    python -m helpers.train --data data/fake_or_real --model vit_b16 --recipe linear_probe --out build/probe
    python -m helpers.train --data data/fake_or_real --model vit_b16 --recipe finetune --out build/finetune

Each setting flag (``--lr``, ...) replaces that field of the ``--recipe``. ``--out`` receives
``metrics.json`` (with 95 % intervals), ``detector/`` (with its split and threshold) and
``training_state/`` (for ``--resume``). Several GPUs: ``torchrun --nproc_per_node=4 -m helpers.train ...``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from helpers import _cli as cli
from helpers import _files as files
from helpers.data import transforms
from helpers.data.cache import folder_dataset
from helpers.data.datasets import CLASS_NAMES
from helpers.data.images import list_image_files
from helpers.data.loaders import create_dataloaders
from helpers.model import pretrained
from helpers.model.vit import ViT, get_config
from helpers.serving.inference import DETECTOR_DIR, save_detector, split_record
from helpers.train import distributed, evaluation, loop, run, trust
from helpers.train import state as training_state
from helpers.train.precision import PRECISIONS, allow_tf32, resolve_precision
from helpers.train.recipes import RECIPES, Recipe, get_recipe

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
    parser = cli.ArgumentParser(
        prog="python -m helpers.train",
        description=__doc__.split("\n\n")[0],
        epilog="Recipe settings left out take the values of the --recipe (listed in each help line).",
    )
    add = parser.add_argument
    add("--data", type=Path, required=True, help="folder with fake_images/ and real_images/, or above it")
    add("--model", choices=MODELS, default="vit_tiny", help="ViT size (default: vit_tiny)")
    add("--recipe", choices=sorted(RECIPES), default="scratch", help="how to train (default: scratch)")
    add("--out", type=Path, default=None, help="output folder (default: build/MODEL-RECIPE)")
    for flag, field, kind, text in RECIPE_FLAGS:
        defaults = ", ".join(f"{name} {getattr(recipe, field)}" for name, recipe in RECIPES.items())
        add(flag, dest=field, type=kind, help=f"{text} ({defaults})")
    add("--image-size", type=int, help="pixels, a multiple of the patch size (vit_tiny 64, vit_b16 224)")
    add("--seed", type=int, default=42, help="seed of the split, initialisation and shuffling")
    add("--val-fraction", type=float, default=0.1, help="share of each class for validation")
    add("--test-fraction", type=float, default=0.1, help="share of each class for the test")
    add("--target-fpr", type=float, default=0.05, help="real photos the threshold may flag (default 0.05)")
    add("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = the GPU if there is one")
    formats = ["auto", *sorted(PRECISIONS)]
    add("--precision", choices=formats, default="auto", help="auto = bf16 (T4: fp16) on a GPU, fp32 on a CPU")
    add("--compile", action="store_true", help="torch.compile: slow start, faster steps; pays on a GPU")
    add("--num-workers", type=int, default=None, help="DataLoader worker processes (default: by CPU count)")
    add("--resume", action="store_true", help="continue from OUT/training_state if it exists")
    add("--allow-random-weights", action="store_true", help="RANDOM weights if ImageNet's are unavailable")
    add("--no-progress", action="store_true", help="no progress bars")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; ``args.recipe`` becomes a :class:`Recipe`. Errors exit with 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given: dict[str, Any] = {field: getattr(args, field) for _, field, _, _ in RECIPE_FLAGS}
    overrides = {field: value for field, value in given.items() if value is not None}
    if "epochs" in overrides and "warmup_epochs" not in overrides:  # short runs: warm up a tenth of them
        overrides["warmup_epochs"] = min(RECIPES[args.recipe].warmup_epochs, overrides["epochs"] / 10)
    if overrides.get("grad_clip") == 0:
        overrides["grad_clip"] = None
    try:
        args.recipe = get_recipe(args.recipe, **overrides)
    except ValueError as err:  # e.g. "recipe 'scratch': epochs must be an integer >= 1, got 0"
        flag = next((f for f, field, _, _ in RECIPE_FLAGS if f": {field} must" in str(err)), "--recipe")
        parser.error(f"{flag}: {err}")
    recipe = args.recipe
    if args.image_size is None:
        args.image_size = DEFAULT_IMAGE_SIZE[args.model]
    args.out = args.out or Path("build") / f"{args.model}-{recipe.name}"
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
    if not 0 <= args.target_fpr < 1:
        parser.error(f"--target-fpr must be at least 0 and below 1, got {args.target_fpr}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible; use --device cpu (or auto)")
    on_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    try:  # the format this machine trains fastest in, or a clear refusal (fp16 on a CPU, ...)
        args.precision = resolve_precision(args.precision, "cuda" if on_gpu else "cpu")
    except ValueError as err:
        parser.error(f"--precision {args.precision}: {err}")
    if args.compile and not recipe.train_backbone:
        parser.error(
            f"--compile: --recipe {recipe.name} trains one layer on cached features, nothing worth compiling"
        )
    if not args.data.is_dir():
        parser.error(
            f"--data {args.data}: no such folder. It should hold fake_images/ and real_images/; "
            "make the toy set with `python -m helpers.data make-toy --out data/toy`."
        )
    args.data = find_class_folder(args.data, verbose=distributed.rank_from_env() == 0)
    if not recipe.train_backbone and distributed.world_size_from_env() > 1:
        parser.error(
            f"--recipe {recipe.name} trains one linear layer on cached features; run it in a single "
            "process (python -m helpers.train), not under torchrun."
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, train, write; an expected failure ends with one ``error:`` line (see :mod:`helpers._cli`)."""
    args = parse_args(argv)
    expected = (
        training_state.TrainingStateError,
        pretrained.PretrainedWeightsUnavailable,
        distributed.RankZeroFailed,  # DDP: the other processes, when process 0 failed to fetch
    )
    return cli.run(lambda: train(args), expected=expected)


def train(args: argparse.Namespace) -> int:
    """The run that ``python -m helpers.train`` makes with the parsed ``args``; returns 0."""
    recipe: Recipe = args.recipe
    start = time.perf_counter()
    device, rank, world_size = distributed.setup(args.device)
    progress = not args.no_progress and rank == 0
    try:
        if rank == 0:  # the process that writes: find out now, not after the first epoch
            cli.check_output_folder(args.out, space_needed(args))
        tf32 = allow_tf32(device)
        loop.set_seed(args.seed)
        make = transforms.pretrained_transforms if recipe.pretrained else transforms.scratch_transforms
        train_tf, eval_tf = make(args.image_size)
        if not recipe.train_backbone:
            train_tf = eval_tf  # features are computed once, so no random augmentation
        fractions = {"val_fraction": args.val_fraction, "test_fraction": args.test_fraction}
        try:  # DDP: process 0 indexes the data (and checks every image), then the others reuse its index
            *loaders, class_names = distributed.rank_zero_first(
                lambda: create_dataloaders(args.data, train_tf, eval_tf, recipe.batch_size, seed=args.seed,
                                           num_workers=args.num_workers, dataset=folder_dataset, **fractions)
            )  # fmt: skip
        except ValueError as err:  # a folder without two classes of images, too few images per class
            raise cli.CommandError(str(err)) from err
        train_loader, val_loader, test_loader = loaders
        splits = dict(zip(("train", "val", "test"), (ld.dataset.samples for ld in loaders), strict=True))
        sampler = distributed.sampler(train_loader.dataset, rank, world_size, args.seed)
        train_loader = run.repeatable_train_loader(train_loader, args.seed, sampler)
        if len(test_loader.dataset) == 0:
            test_loader = None

        # DDP: process 0 downloads the ImageNet weights into the cache, then the others read them there
        model, origin = distributed.rank_zero_first(lambda: run.build_model(args, len(class_names)))
        if args.compile:
            model.compile()  # in place: the state dict keeps its names, so saving and resuming are unchanged
        if rank == 0:
            parameters = sum(p.numel() for p in model.parameters())
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            how = args.precision + (", TF32 matmuls" if tf32 and args.precision == "fp32" else "")
            how += "; compiled" if args.compile else ""
            n = [0 if ld is None else len(ld.dataset) for ld in (train_loader, val_loader, test_loader)]
            device_text = f"{device} x {world_size} processes" if world_size > 1 else str(device)
            print(f"{args.model} ({origin}), recipe {recipe.name}, {parameters:,} parameters ({trainable:,} "
                  f"trainable); {n[0]} train / {n[1]} val / {n[2]} test images; device {device_text}; "
                  f"precision {how}", flush=True)  # fmt: skip
        resume_hint = "run the same command with --resume to continue from the last completed epoch"
        try:
            result = run.train_model(
                model, train_loader, val_loader, test_loader, recipe, args, device, progress
            )
            if rank == 0:
                seconds = time.perf_counter() - start
                split = split_record(args.data, args.seed, splits, **fractions)
                point = operating_point(model, val_loader, test_loader, args, device)
                write_outputs(
                    args, model, {**result, **point}, class_names, origin, world_size, seconds, split
                )
        except OSError as err:  # a full disk, a folder that vanished: the last saved epoch is safe
            raise cli.CommandError(f"{cli.describe_os_error(err)}; then {resume_hint}") from err
        except KeyboardInterrupt as err:
            raise cli.CommandError(f"interrupted; {resume_hint}", status=130) from err
    finally:
        distributed.cleanup(world_size)
    return 0


def find_class_folder(data: Path, verbose: bool = True) -> Path:
    """``data`` if its sub-folders hold the images, else its one sub-folder that does (a download's
    ``train/``), else ``data`` (indexing it then says what is missing)."""

    def folders(folder: Path) -> list[Path]:  # without hidden ones and macOS's __MACOSX
        return sorted(d for d in folder.iterdir() if d.is_dir() and d.name[0] != "." and d.name != "__MACOSX")

    def holds_classes(folder: Path) -> bool:  # two or more sub-folders with images (at any depth)
        return sum(any(list_image_files(d)) for d in folders(folder)) >= 2

    inside = [] if holds_classes(data) else [d for d in folders(data) if holds_classes(d)]
    if len(inside) != 1:
        return data
    if verbose:
        print(f"--data {data}: using {inside[0]}, the sub-folder that holds the class folders")
    return inside[0]


def space_needed(args: argparse.Namespace) -> int:
    """Bytes ``--out`` needs: the training state twice (a save writes the new one first), less what is
    there, plus the detector (ViT-B/16 fine-tuning: about 3.1 GB)."""
    config = get_config(args.model, image_size=args.image_size, num_classes=len(CLASS_NAMES))
    weights = 4 * config.num_parameters  # fp32
    head = 4 * (config.dim + 1) * config.num_classes  # all a linear probe trains
    trained = weights if args.recipe.train_backbone else head
    state = 4 * trained  # weights, best weights, and AdamW's two moments
    folder = Path(args.out) / training_state.FOLDER
    existing = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if folder.is_dir() else 0
    return max(2 * state - existing, state) + weights


def operating_point(model: ViT, val_loader, test_loader, args, device) -> dict[str, Any]:
    """The threshold of P(fake) that flags at most ``--target-fpr`` of validation's real photos; on the test
    set (else validation) the rates at it, and accuracy, F1 and AUROC with 95 % intervals."""
    val_probs, val_targets = evaluation.predict_loader(model, val_loader, device, precision=args.precision)
    threshold = trust.threshold_for_fpr(trust.fake_scores(val_probs), val_targets, args.target_fpr)
    probs, targets = (val_probs, val_targets) if test_loader is None else \
        evaluation.predict_loader(model, test_loader, device, precision=args.precision)  # fmt: skip
    try:
        intervals = trust.metric_intervals(probs, targets)
    except ValueError:  # one class only, too few images: no interval
        intervals = None
    at = {
        "threshold": threshold,
        "target_fpr": args.target_fpr,
        **trust.rates_at_threshold(probs, targets, threshold),
    }
    return {"intervals": intervals, "operating_point": at}


def write_outputs(args, model: ViT, result: dict, class_names, origin: str, world_size: int, seconds, split):
    """``metrics.json``, and the detector (``model.safetensors`` + ``config.json``) in ``detector/``."""
    out, recipe = Path(args.out), args.recipe
    out.mkdir(parents=True, exist_ok=True)
    spec = transforms.eval_transform_spec(args.image_size, pretrained=recipe.pretrained)
    point = result["operating_point"]
    extra = {"recipe": recipe.name, "weights": origin, "threshold": point["threshold"],
             "target_fpr": args.target_fpr, "split": split}  # fmt: skip
    detector = save_detector(model, out / DETECTOR_DIR, class_names, spec, model_name=args.model, extra=extra)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "recipe"}
    fields, kept = recipe.to_dict(), ("history", "best_epoch", "val", "test", "intervals", "operating_point")
    metrics = {"recipe": fields, "settings": {k: v for k, v in settings.items() if k not in fields},
               **{key: result[key] for key in kept}, "class_names": list(class_names), "weights": origin,
               "world_size": world_size, "seconds": seconds,
               "train_images_per_second": result["train_images_per_second"]}  # fmt: skip
    path = files.write_json(out / "metrics.json", metrics)
    which = "test" if result["test"] else "val"
    print(f"best epoch {result['best_epoch']}, on the {which} images:")
    if result["intervals"]:
        print(trust.format_metric_intervals(result["intervals"]))
    print(
        f"threshold {point['threshold']:.3f} (P(fake) above it flags at most {args.target_fpr:.0%} of the "
        f"validation set's real photos): catches {point['tpr']:.1%} of {point['n_fake']} fakes, flags "
        f"{point['fpr']:.1%} of {point['n_real']} real photos.\n"
        f"{result['train_images_per_second']:.0f} train images/s; {seconds:.0f} s in all. "
        f"Wrote {path} and the detector in {detector}."
    )
