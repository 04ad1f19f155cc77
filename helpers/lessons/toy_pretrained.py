"""Small mode's own "ImageNet" (lesson 04): lesson 03's ``vit_tiny``, trained on real toy images versus
:data:`helpers.data.toy.GENERATORS` fakes, transferred to an unseen generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from helpers.data import loaders
from helpers.lessons import detectors
from helpers.model.vit import ViT
from helpers.serving import inference


def load_source_model(device: torch.device | str = "cpu") -> tuple[ViT, dict[str, Any]]:
    """Lesson 03's tiny ViT and a summary of it: the one lesson 03 saved in the course home, else one
    trained the same way now (the same weights, about 20 s on two CPU cores). Lessons 04 and 05."""
    folder = detectors.find_or_make("scratch", mode="small", dataset="toy", device=device)
    predictor = inference.load_predictor(folder, "cpu", precision="fp32")
    config = predictor.config
    accuracy = config["test_metrics"]["accuracy"]  # lesson 03 saves its interval, find_or_make the value
    info = {
        "name": "lesson 03's vit_tiny",
        "folder": str(folder),
        "model": config["model_name"],
        "train_images": len(config["split"]["train_files"]),
        "source_test_accuracy": accuracy.get("value") if isinstance(accuracy, dict) else accuracy,
    }
    return predictor.model.eval(), info


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
