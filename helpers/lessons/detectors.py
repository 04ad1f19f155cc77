"""Which detector lessons 05 and 06 examine: a saved one, else one made here, said loudly (small mode: lesson
03's tiny ViT; full: a linear probe on ViT-B/16); a small-mode one is never published as the real one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from helpers import course
from helpers.data import cache, datasets, loaders, transforms
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
    ``create_dataloaders`` drew them. Lessons 05 and 06."""
    samples, class_names = datasets.find_images(data_root)
    if list(config.get("class_names", class_names)) != class_names:
        raise inference.DetectorError(
            f"the detector's classes {config.get('class_names')} are not those of {data_root}: {class_names}"
        )
    split = datasets.stratified_split(
        [label for _, label in samples], VAL_FRACTION, TEST_FRACTION, seed=config.get("split_seed", 42)
    )
    return tuple([samples[i] for i in indices] for indices in split)


def train_detector(
    method: str, data_root: str | Path, out_dir: str | Path, *, device: torch.device | str, seed: int = 42,
    image_size: int | None = None, patch_size: int = 8, epochs: int = 4, precision: str = "fp32",
    num_workers: int = 0, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Lesson 03's ``"scratch"`` ``vit_tiny`` (64 px) or lesson 04's ``"linear_probe"`` on ViT-B/16 (224 px),
    saved as a detector recording its split (and ``extra``); returns ``fit``'s result. Lessons 05 and 06."""
    loop.set_seed(seed)
    if method == "scratch":
        recipe = recipes.get_recipe("scratch", epochs=epochs, warmup_epochs=max(1, epochs // 10))
        config = get_config("vit_tiny", image_size=image_size or 64, patch_size=patch_size, num_classes=2)
        model, fit = ViT(config), loop.fit
        train_tf, eval_tf = transforms.scratch_transforms(config.image_size)
    else:  # the frozen backbone runs once over every image: no random augmentation
        recipe, fit = recipes.get_recipe("linear_probe"), probe.fit_linear_probe
        model = pretrained.load_pretrained_vit_b16(num_classes=2, image_size=image_size or 224)
        train_tf = eval_tf = transforms.pretrained_transforms(model.config.image_size)[1]
    *splits, names = loaders.create_dataloaders(
        data_root, train_tf, eval_tf, recipe.batch_size, seed=seed, num_workers=num_workers,
        dataset=cache.folder_dataset,
    )  # fmt: skip
    result = fit(
        model, *splits[:2], recipe, device=device, test_loader=splits[2], precision=precision, seed=seed,
        progress=method != "scratch",
    )  # fmt: skip
    samples = dict(zip(("train", "val", "test"), (loader.dataset.samples for loader in splits), strict=True))
    fractions = {"val_fraction": VAL_FRACTION, "test_fraction": TEST_FRACTION}
    split = inference.split_record(data_root, seed, samples, **fractions)
    info = {**(extra or {}), "split_seed": seed, "split": split, "recipe": recipe.to_dict(),
            "test_metrics": result["test"]}  # fmt: skip
    spec = transforms.eval_transform_spec(model.config.image_size, pretrained=method != "scratch")
    name = "vit_tiny" if method == "scratch" else "vit_b16"
    inference.save_detector(model.cpu().eval(), out_dir, names, spec, name, extra=info)
    return result


def find_or_make(which: str, *, mode: str, dataset: str, device: torch.device | str, **training) -> Path:
    """The folder of lesson 04's ``"finetuned"`` detector or lesson 03's ``"scratch"`` tiny ViT, reused when
    its settings match and its split is recorded, else made by :func:`train_detector`. Lessons 05 and 06."""
    if which not in ("finetuned", "scratch"):
        raise ValueError(f"which must be 'finetuned' or 'scratch', got {which!r}")
    training.setdefault("seed", 42)
    if which == "finetuned":
        folder = course.detector_dir()
        config = read_config(folder)
        if config is not None and mode == "small" and "split" not in config:
            print(f"{folder} records no training split, so nothing could prove its test images unseen.")
        elif config is not None and not (mode == "full" and is_small_mode(config)):
            print(f"Using the detector in {folder}: {describe(config)}.")
            return folder
        elif config is not None:  # full mode, small-mode detector
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
            info = {"mode": mode, "dataset": dataset, "imagenet_weights": True, "method": "linear_probe"}
            info["made_by"] = MADE_BY
            result = train_detector(
                "linear_probe", data.get_dataset(dataset), folder, device=device, extra=info, **training
            )
            test = result["test"]["accuracy"]
            print(f"linear probe made in {result['seconds']:.0f} s: test accuracy {test:.1%}")
            return folder
        print(f"No detector from notebook 04 in {folder} to use: using notebook 03's tiny ViT instead.")
    folder = scratch_detector_dir()
    config = read_config(folder) or {}
    wanted = {"image_size": training.get("image_size") or 64, "patch_size": training.get("patch_size", 8)}
    wanted |= {"dataset": dataset, "split_seed": training["seed"]}
    found = {**config.get("vit_config", {}), **{key: config.get(key) for key in ("dataset", "split_seed")}}
    if all(found.get(key) == value for key, value in wanted.items()) and "split" in config:
        print(f"Reusing the tiny ViT saved in {folder} (notebook 03's recipe, its split recorded).")
        return folder
    print(f"No tiny ViT trained with these settings (split recorded) in {folder}: training one now ...")
    extra = {"mode": mode, "dataset": dataset}
    result = train_detector(
        "scratch", data.get_dataset(dataset), folder, device=device, extra=extra, **training
    )
    print(f"trained in {result['seconds']:.0f} s: test accuracy {result['test']['accuracy']:.1%}")
    return folder


def evaluation_split(config: dict[str, Any], data_root: str | Path) -> tuple[list, list]:
    """The detector's ``(val, test)`` samples of ``data_root``: those its config records, else
    :func:`rebuild_split`'s; checked by ``inference.check_unseen``. Lesson 06."""
    split, names = config.get("split") or {}, list(config["class_names"])
    if "val_files" in split:
        files = (split["val_files"], split["test_files"])
        val, test = ([(Path(data_root, f), names.index(f.split("/")[0])) for f in fs] for fs in files)
    else:
        _, val, test = rebuild_split(data_root, config)
    inference.check_unseen(config, [path for path, _ in val + test])
    return val, test
