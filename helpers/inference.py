"""Export a trained detector, and load it back to predict on single images (lessons 04 and 06).

A detector folder holds exactly two files, neither of them pickled:

- ``model.safetensors``: the model's weights (safetensors cannot run code when loaded).
- ``config.json``: everything needed to rebuild the model and its eval transform, e.g.::

    {"format": "fake-vit/1", "model_name": "vit_tiny",
     "vit_config": {"image_size": 64, "patch_size": 8, ...},
     "class_names": ["fake_images", "real_images"],
     "transform": {"resize": 64, "crop": 64, "mean": [...], "std": [...], "interpolation": "bilinear"}}

``python -m helpers.train`` writes one to ``OUT/detector/``, the fine-tuning lesson to
``build/detector/`` (:func:`helpers.course.detector_dir`); the demo in ``app/`` and the deployment
lesson read it with :func:`load_predictor`. A detector is what predictions need and nothing more;
resuming a training run reads the training state instead (:mod:`helpers.training_state`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from helpers.files import atomic_write, write_json
from helpers.images import load_image_rgb
from helpers.transforms import build_eval_transform
from helpers.vit import ViT, ViTConfig

FORMAT = "fake-vit/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DETECTOR_DIR = "detector"  # inside a training run's folder (python -m helpers.train --out OUT)


class DetectorError(ValueError):
    """A detector folder is missing a file, or its files do not fit together. Lesson 06."""


def save_detector(
    model: ViT,
    out_dir: str | Path,
    class_names: list[str] | tuple[str, ...],
    transform_spec: dict[str, Any],
    model_name: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir`` and return the folder.

    ``transform_spec`` is the eval transform (:func:`helpers.transforms.eval_transform_spec`);
    ``extra`` adds keys to ``config.json`` (the dataset, the recipe, test metrics, ...). Lessons 03 and 04.
    """
    if len(class_names) != model.config.num_classes:
        raise ValueError(
            f"{len(class_names)} class names {list(class_names)} for a model with "
            f"{model.config.num_classes} outputs"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "model_name": model_name,
        "vit_config": model.config.to_dict(),
        "class_names": list(class_names),
        "transform": dict(transform_spec),
        **(extra or {}),
    }
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: save_file(weights, tmp))
    write_json(out_dir / CONFIG_FILE, config)
    return out_dir


@dataclass
class Predictor:
    """A model in eval mode, its eval transform and its class names, ready for single images.

    Lessons 05 and 06.
    """

    model: ViT
    transform: Any
    class_names: list[str]
    config: dict[str, Any]
    device: torch.device

    @torch.inference_mode()
    def predict_batch(self, images: list[Image.Image | str | Path]) -> torch.Tensor:
        """Class probabilities, shape (B, num_classes), for a list of images or paths."""
        batch = torch.stack([self.transform(load_image_rgb(image)) for image in images])  # (B, 3, H, W)
        logits = self.model(batch.to(self.device))  # (B, num_classes)
        return logits.float().softmax(dim=-1).cpu()

    def predict(self, image: Image.Image | str | Path) -> dict[str, float]:
        """``{class name: probability}`` for one image (any mode PIL reads: RGBA, greyscale, ...)."""
        probs = self.predict_batch([image])[0]
        return {name: float(p) for name, p in zip(self.class_names, probs, strict=True)}


def load_predictor(detector_dir: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Rebuild the model and eval transform saved by :func:`save_detector`. Lessons 04 to 06.

    ``detector_dir`` is a detector folder, or a training run's folder with one in ``detector/``.
    Raises :class:`DetectorError` naming the file when a file is missing, unreadable, or does not
    match the other (for example weights of another architecture).
    """
    folder = Path(detector_dir)
    if not (folder / CONFIG_FILE).is_file() and (folder / DETECTOR_DIR / CONFIG_FILE).is_file():
        folder = folder / DETECTOR_DIR  # the folder of a `python -m helpers.train` run
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise DetectorError(
                f"{path} not found. A detector folder needs {CONFIG_FILE} and {WEIGHTS_FILE}, as written "
                "by `python -m helpers.train --out DIR` (in DIR/detector) or the fine-tuning lesson "
                "(notebook 04, in build/detector)."
            )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        vit_config = ViTConfig.from_dict(config["vit_config"])
        class_names = list(config["class_names"])
        transform = build_eval_transform(config["transform"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DetectorError(f"{config_path} is not a valid {FORMAT} config: {err!r}") from err
    if config.get("format") != FORMAT:
        raise DetectorError(f"{config_path} has format {config.get('format')!r}, expected {FORMAT!r}")
    if len(class_names) != vit_config.num_classes:
        raise DetectorError(
            f"{config_path} lists {len(class_names)} class names "
            f"but the model has {vit_config.num_classes} outputs"
        )

    model = ViT(vit_config)
    try:
        state_dict = load_file(weights_path)
        model.load_state_dict(state_dict)
    except Exception as err:  # safetensors raises its own error types; name the file either way
        raise DetectorError(
            f"{weights_path} does not fit the model described in {config_path}: {err}"
        ) from err
    device = torch.device(device)
    model.to(device).eval()
    return Predictor(model=model, transform=transform, class_names=class_names, config=config, device=device)
