"""Small mode's own "ImageNet" (lesson 04): ``vit_tiny`` trained on real toy images versus
:data:`helpers.data.toy.GENERATORS` fakes, transferred to an unseen generator; cached as safetensors + JSON.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from helpers import course
from helpers._files import atomic_write, write_json
from helpers.data import cache, loaders, toy, transforms
from helpers.model.vit import ViT, get_config
from helpers.train import loop, recipes

SOURCE_NAME = "toy_vit_tiny_source"
MODEL = "vit_tiny"  # helpers.model.vit preset: 64-px images, 8-px patches, width 192, 6 blocks
SOURCE_EPOCHS = 4  # toy-dataset epochs of the "scratch" recipe; measured: 100 % source test accuracy


def source_recipe(epochs: int = SOURCE_EPOCHS) -> recipes.Recipe:
    """The source task's recipe: lesson 03's "scratch", for ``epochs`` epochs."""
    return recipes.get_recipe("scratch", epochs=epochs)


def source_paths(home: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(weights, info)``: ``<home>/build/pretrained/toy_vit_tiny_source.safetensors`` and ``.json``."""
    folder = Path(home) if home is not None else course.home()
    stem = folder / "build" / "pretrained" / SOURCE_NAME
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def pretrain_source_model(
    data_root: str | os.PathLike, recipe: recipes.Recipe, *, seed: int = 0
) -> tuple[ViT, dict[str, Any]]:
    """Train ``vit_tiny`` from random weights on the toy dataset in ``data_root`` (the same seed gives the
    same weights); return the model (best validation epoch) and its summary. Lesson 04."""
    start = time.perf_counter()
    train_tf, eval_tf = transforms.scratch_transforms(64)  # flips and whole-pixel shifts: no resampling
    train_loader, val_loader, test_loader, class_names = loaders.create_dataloaders(
        data_root, train_tf, eval_tf, batch_size=recipe.batch_size, seed=seed, num_workers=0,
        dataset=cache.folder_dataset,
    )  # fmt: skip
    loop.set_seed(seed)
    model = ViT(get_config(MODEL, num_classes=len(class_names)))
    result = loop.fit(model, train_loader, val_loader, recipe, device="cpu", test_loader=test_loader,
                      seed=seed, progress=False)  # fmt: skip
    what = f"vit_tiny from random weights: real toy images versus the fakes of {sorted(toy.GENERATORS)}"
    info = {"name": SOURCE_NAME, "what": what, "model": MODEL, "recipe": recipe.to_dict(), "seed": seed,
            "toy_version": toy.VERSION, "class_names": class_names, "train_images": len(train_loader.dataset),
            "source_val_accuracy": result["val"]["accuracy"],
            "source_test_accuracy": result["test"]["accuracy"],
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    return model.eval(), info


def load_source_model(
    epochs: int = SOURCE_EPOCHS, seed: int = 0, *, home: str | os.PathLike | None = None
) -> tuple[ViT, dict[str, Any]]:
    """The source model and its summary, cached for this recipe, seed and toy dataset, else trained (17 s on
    two CPU cores) and cached; ``info["cached"]`` says which. Lesson 04."""
    recipe = source_recipe(epochs)
    weights_path, info_path = source_paths(home)
    if weights_path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        wanted = {"model": MODEL, "recipe": recipe.to_dict(), "seed": seed, "toy_version": toy.VERSION}
        if all(info.get(key) == value for key, value in wanted.items()):
            model = ViT(get_config(MODEL, num_classes=len(info["class_names"])))
            model.load_state_dict(load_file(weights_path))  # strict: every key and shape must match
            return model.eval(), {**info, "cached": True}
    from helpers.data import sources as data  # imports the whole dataset machinery: only when needed

    data_root = data.get_dataset("toy", root=Path(home) / "data" / "toy" if home is not None else None)
    model, info = pretrain_source_model(data_root, recipe, seed=seed)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.unlink(missing_ok=True)  # no JSON may describe weights other than those beside it
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    atomic_write(weights_path, lambda path: save_file(state, path))
    write_json(info_path, info)  # written last: a folder with weights but no JSON is retrained
    return model, {**info, "cached": False}


class TensorImages(Dataset):
    """uint8 ``(N, H, W, 3)`` images and ``(N,)`` labels in memory; item ``i``: (transform(image), label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
        self.targets = [int(label) for label in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.targets[index]


def tensor_loader(
    images: np.ndarray, labels: np.ndarray, transform, batch_size: int, *, shuffle: bool, seed: int = 0
) -> DataLoader:
    """A DataLoader over in-memory images, no workers, shuffled by its own seeded generator. Lesson 04."""
    dataset = TensorImages(images, labels, transform)
    return loaders.make_loader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, num_workers=0)
