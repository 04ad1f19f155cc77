"""Export a trained detector, and load it back to predict on single images.

A checkpoint folder holds exactly two files, neither of them pickled:

- ``model.safetensors``: the model's weights (safetensors cannot run code when loaded).
- ``config.json``: everything needed to rebuild the model and its eval transform, e.g.::

    {"format": "fake-vit/1", "model_name": "vit_tiny",
     "vit_config": {"image_size": 64, "patch_size": 8, ...},
     "class_names": ["fake_images", "real_images"],
     "transform": {"resize": 64, "crop": 64, "mean": [...], "std": [...], "interpolation": "bilinear"}}

``python -m helpers.train`` and the fine-tuning lesson write such a folder; the demo in ``app/``
and the deployment lesson read it with :func:`load_predictor`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from helpers.data import build_eval_transform, load_image_rgb
from helpers.vit import ViT, ViTConfig

FORMAT = "fake-vit/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint folder is missing a file, or its files do not fit together."""


def save_for_inference(
    model: ViT,
    out_dir: str | Path,
    class_names: list[str] | tuple[str, ...],
    transform_spec: dict[str, Any],
    model_name: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir`` and return the folder."""
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
    # Write to temporary names, then rename: a reader never sees half a file.
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, out_dir / (WEIGHTS_FILE + ".tmp"))
    (out_dir / (CONFIG_FILE + ".tmp")).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(out_dir / (WEIGHTS_FILE + ".tmp"), out_dir / WEIGHTS_FILE)
    os.replace(out_dir / (CONFIG_FILE + ".tmp"), out_dir / CONFIG_FILE)
    return out_dir


@dataclass
class Predictor:
    """A model in eval mode, its eval transform and its class names, ready for single images."""

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


def load_predictor(checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Rebuild the model and eval transform saved by :func:`save_for_inference`.

    Raises :class:`CheckpointError` naming the file when a file is missing, unreadable, or does not
    match the other (for example weights of another architecture).
    """
    folder = Path(checkpoint_dir)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(
                f"{path} not found. A checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE}, as written "
                "by `python -m helpers.train --out DIR` or the fine-tuning lesson (notebook 04)."
            )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        vit_config = ViTConfig.from_dict(config["vit_config"])
        class_names = list(config["class_names"])
        transform = build_eval_transform(config["transform"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path} is not a valid {FORMAT} config: {err!r}") from err
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} has format {config.get('format')!r}, expected {FORMAT!r}")
    if len(class_names) != vit_config.num_classes:
        raise CheckpointError(
            f"{config_path} lists {len(class_names)} class names but the model has {vit_config.num_classes} outputs"
        )

    model = ViT(vit_config)
    try:
        state_dict = load_file(weights_path)
        model.load_state_dict(state_dict)
    except Exception as err:  # safetensors raises its own error types; name the file either way
        raise CheckpointError(
            f"{weights_path} does not fit the model described in {config_path}: {err}"
        ) from err
    device = torch.device(device)
    model.to(device).eval()
    return Predictor(model=model, transform=transform, class_names=class_names, config=config, device=device)
