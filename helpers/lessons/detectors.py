"""Which detector lessons 05 and 06 examine: found before any data is touched, or made here.

A fresh Colab runtime may open lesson 05 or 06 without lesson 04's detector. :func:`find_or_make`
looks in the course's folders first; only when nothing usable is saved does it fetch data and make one,
saying so loudly. Small mode: lesson 03's tiny ViT (:func:`train_scratch_detector`, minutes on a CPU).
Full mode: a linear probe on the ImageNet ViT-B/16 (lesson 04's cheaper method, minutes on a GPU); a
small-mode detector is never presented as the real one, nor published (:func:`check_publishable`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from helpers import course
from helpers.data import datasets, loaders, transforms
from helpers.data import sources as data
from helpers.model import pretrained
from helpers.model.vit import ViT, get_config
from helpers.serving import inference
from helpers.train import loop, probe, recipes

SCRATCH_DIR = "scratch_detector"  # lesson 03's tiny ViT, beside lesson 04's detector/
VAL_FRACTION = TEST_FRACTION = 0.1  # the split of helpers.data.loaders.create_dataloaders
MADE_BY = "helpers.lessons.detectors.find_or_make: a quick linear probe, notebook 04's detector was missing"


def scratch_detector_dir() -> Path:
    """``home()/build/scratch_detector``: lesson 03's tiny ViT. Lessons 03, 05 and 06."""
    return course.home() / "build" / SCRATCH_DIR


def read_config(folder: str | Path) -> dict[str, Any] | None:
    """The ``config.json`` of the detector in ``folder``, or None without a complete one. Lessons 05, 06."""
    try:
        config = json.loads((Path(folder) / inference.CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and (Path(folder) / inference.WEIGHTS_FILE).is_file() else None


def is_small_mode(config: dict[str, Any]) -> bool:
    """True when a detector's config says it was made in small mode or on the toy data."""
    return config.get("mode") == "small" or config.get("dataset") == "toy"


def describe(config: dict[str, Any]) -> str:
    """A short name for figure titles: model, how it was trained, on what, and any warning."""
    recipe = config.get("recipe")
    method = config.get("method") or (recipe.get("name") if isinstance(recipe, dict) else recipe)
    name, dataset = config.get("model_name", "?"), config.get("dataset", "?")
    warning = ", from RANDOM weights" if config.get("imagenet_weights") is False else ""
    return f"{name} ({method or 'unknown recipe'}, {dataset} data){warning}"


def check_publishable(config: dict[str, Any], where: str | Path) -> None:
    """Raise :class:`~helpers.serving.inference.DetectorError` for a small-mode detector. Lesson 06."""
    if is_small_mode(config):
        raise inference.DetectorError(
            f"{where} holds a small-mode detector (mode={config.get('mode')!r}, "
            f"dataset={config.get('dataset')!r}): a stand-in trained on toy images, not a detector of "
            "real fakes. Publish the detector of notebook 04 in full mode (on a GPU), or one trained with "
            "`python -m helpers.train` on real images."
        )


def rebuild_split(
    data_root: str | Path, config: dict[str, Any]
) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """The ``(train, val, test)`` samples of ``data_root``, drawn again from ``config["split_seed"]`` as
    :func:`helpers.data.loaders.create_dataloaders` drew them for the detector. Lessons 05 and 06."""
    samples, class_names = datasets.find_images(data_root)
    if list(config.get("class_names", class_names)) != class_names:
        raise inference.DetectorError(
            f"the detector's classes {config.get('class_names')} are not those of {data_root}: {class_names}"
        )
    split = datasets.stratified_split(
        [label for _, label in samples], VAL_FRACTION, TEST_FRACTION, seed=config.get("split_seed", 42)
    )
    return tuple([samples[i] for i in indices] for indices in split)


def train_scratch_detector(
    data_root: str | Path,
    out_dir: str | Path,
    *,
    image_size: int,
    patch_size: int,
    epochs: int,
    seed: int,
    device: torch.device | str,
    precision: str = "fp32",
    num_workers: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Lesson 03's "scratch" recipe: a ``vit_tiny`` from random weights, saved as a detector; ``extra``
    adds keys to ``config.json``. Returns :func:`helpers.train.loop.fit`'s result. Lessons 05 and 06."""
    recipe = recipes.get_recipe("scratch", epochs=epochs, warmup_epochs=max(1, epochs // 10))
    train_tf, eval_tf = transforms.scratch_transforms(image_size)
    train_loader, val_loader, test_loader, names = loaders.create_dataloaders(
        data_root, train_tf, eval_tf, batch_size=recipe.batch_size, seed=seed, num_workers=num_workers
    )
    loop.set_seed(seed)
    model = ViT(get_config("vit_tiny", image_size=image_size, patch_size=patch_size, num_classes=len(names)))
    result = loop.fit(
        model, train_loader, val_loader, recipe, device=device, test_loader=test_loader,
        precision=precision, seed=seed, progress=False,
    )  # fmt: skip
    spec = transforms.eval_transform_spec(image_size, pretrained=False)
    _save(model, out_dir, names, spec, "vit_tiny", recipe, result, seed=seed, extra=extra)
    return result


def _save(model, out_dir, names, spec, model_name, recipe, result, *, seed, extra) -> None:
    info = {**(extra or {}), "split_seed": seed, "recipe": recipe.to_dict(), "test_metrics": result["test"]}
    inference.save_detector(model.cpu().eval(), out_dir, names, spec, model_name, extra=info)


def find_or_make(
    which: str,
    *,
    mode: str,
    dataset: str,
    device: torch.device | str,
    precision: str = "fp32",
    seed: int = 42,
    image_size: int | None = None,
    patch_size: int = 8,
    epochs: int = 4,
    num_workers: int = 0,
) -> Path:
    """The folder of lesson 04's ``"finetuned"`` detector or lesson 03's ``"scratch"`` tiny ViT (reused
    when trained with these settings); ``image_size=None``: 224 px for a probe, 64 for the tiny ViT.
    Lessons 05 and 06."""
    if which not in ("finetuned", "scratch"):
        raise ValueError(f"which must be 'finetuned' or 'scratch', got {which!r}")
    if which == "finetuned":
        folder = course.detector_dir()
        config = read_config(folder)
        if config is not None and not (mode == "full" and is_small_mode(config)):
            print(f"Using the detector in {folder}: {describe(config)}.")
            return folder
        if config is not None:  # full mode, small-mode detector
            raise inference.DetectorError(
                f"{folder} holds a detector made in small mode (dataset {config.get('dataset')!r}), which "
                "full mode will not present as the detector. Run notebooks/04_fine_tuning.ipynb in full "
                "mode (it replaces it), or delete that folder and run this notebook again to make a "
                "quick linear probe."
            )
        if mode == "full":
            course.announce(
                f"NO FINE-TUNED DETECTOR in {folder} (notebook 04 has not run with this home).\n"
                "Making a quick stand-in now: a LINEAR PROBE on the ImageNet ViT-B/16 (notebook 04's\n"
                "cheaper method), trained on the real dataset. It is not notebook 04's fine-tuned\n"
                "model. Run notebook 04 with Google Drive on to keep the real one across runtimes."
            )
            model = pretrained.load_pretrained_vit_b16(
                num_classes=len(datasets.CLASS_NAMES), image_size=image_size or 224
            )
            # lesson 04's linear probe: the frozen backbone runs once over every image
            recipe = recipes.get_recipe("linear_probe")
            _, eval_tf = transforms.pretrained_transforms(model.config.image_size)
            train_loader, val_loader, test_loader, names = loaders.create_dataloaders(
                data.get_dataset(dataset), eval_tf, eval_tf, recipe.batch_size, seed=seed,
                num_workers=num_workers,
            )  # fmt: skip
            loop.set_seed(seed)
            result = probe.fit_linear_probe(
                model, train_loader, val_loader, recipe, device=device, test_loader=test_loader,
                precision=precision, seed=seed, progress=True,
            )  # fmt: skip
            spec = transforms.eval_transform_spec(model.config.image_size, pretrained=True)
            info = {"mode": mode, "dataset": dataset, "imagenet_weights": True, "method": "linear_probe"}
            info["made_by"] = MADE_BY
            _save(model, folder, names, spec, "vit_b16", recipe, result, seed=seed, extra=info)
            test, seconds = result["test"]["accuracy"], result["seconds"]
            print(f"linear probe made in {seconds:.0f} s: test accuracy {test:.1%}")
            return folder
        print(f"No detector from notebook 04 in {folder}: using notebook 03's tiny ViT instead.")
    folder, image_size = scratch_detector_dir(), image_size or 64
    config = read_config(folder) or {}
    vit = config.get("vit_config", {})
    wanted = {"dataset": dataset, "split_seed": seed, "image_size": image_size, "patch_size": patch_size}
    found = {"dataset": config.get("dataset"), "split_seed": config.get("split_seed"), **vit}
    if all(found.get(key) == value for key, value in wanted.items()):
        print(f"Reusing the tiny ViT that notebook 03 saved in {folder}.")
        return folder
    print(f"No tiny ViT trained with these settings in {folder}: training one now ({epochs} epochs) ...")
    result = train_scratch_detector(
        data.get_dataset(dataset), folder, image_size=image_size, patch_size=patch_size, epochs=epochs,
        seed=seed, device=device, precision=precision, num_workers=num_workers,
        extra={"mode": mode, "dataset": dataset},
    )  # fmt: skip
    print(f"trained in {result['seconds']:.0f} s: test accuracy {result['test']['accuracy']:.1%}")
    return folder
