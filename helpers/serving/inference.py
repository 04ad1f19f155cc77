"""Export a trained detector, and load it back to predict on single images (lessons 04 and 06).

A detector folder holds ``model.safetensors`` (loading cannot run code) and ``config.json``, e.g.::

    {"format": "fake-vit/1", "model_name": "vit_tiny", "vit_config": {"image_size": 64, ...},
     "class_names": ["fake_images", "real_images"], "transform": {"resize": 64, "crop": 64, ...},
     "threshold": 0.62, "target_fpr": 0.05, "split": {"train_files": [...], ...}}

``threshold``: P(fake) above which it says fake, chosen on validation for at most ``target_fpr`` of real
photos flagged (missing: 0.5). ``split``: its training images, which :func:`check_unseen` refuses."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from helpers import course
from helpers._files import atomic_write, write_json
from helpers.data.images import load_image_rgb
from helpers.data.transforms import build_eval_transform
from helpers.model.limits import MAX_IMAGE_SIZE
from helpers.model.vit import ViT, ViTConfig
from helpers.train import trust
from helpers.train.precision import autocast, resolve_precision

FORMAT = "fake-vit/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DETECTOR_DIR = "detector"  # inside a training run's folder (python -m helpers.train --out OUT)
DEFAULT_THRESHOLD = 0.5  # of P(fake), for a config.json without a chosen "threshold"
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


class DetectorError(ValueError):
    """A detector folder is missing a file, or its files do not fit together. Lesson 06."""


def save_detector(
    model: ViT, out_dir: str | Path, class_names: list[str] | tuple[str, ...], transform_spec: dict[str, Any],
    model_name: str, extra: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Write ``model.safetensors`` and ``config.json`` (plus ``extra``'s keys) into ``out_dir``; return it.
    ``transform_spec``: :func:`helpers.data.transforms.eval_transform_spec`. Lessons 03 and 04."""
    if len(class_names) != model.config.num_classes:
        n = model.config.num_classes
        raise ValueError(f"{len(class_names)} class names {list(class_names)} for a model with {n} outputs")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, "model_name": model_name, "vit_config": model.config.to_dict()}
    config |= {"class_names": list(class_names), "transform": dict(transform_spec), **(extra or {})}
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: save_file(weights, tmp))
    write_json(out_dir / CONFIG_FILE, config)
    return out_dir


@dataclass
class Predictor:
    """A model in eval mode, its eval transform and its class names. Lessons 05 and 06."""

    model: ViT
    transform: Any
    class_names: list[str]
    config: dict[str, Any]
    device: torch.device
    precision: str = "fp32"  # of the forward pass: "fp32", "bf16" or "fp16"

    @torch.inference_mode()
    def predict_batch(self, images: list[Image.Image | str | Path]) -> torch.Tensor:
        """Class probabilities, shape (B, num_classes), for a list of images or paths."""
        batch = torch.stack([self.transform(load_image_rgb(image)) for image in images])  # (B, 3, H, W)
        with autocast(self.device, self.precision):
            logits = self.model(batch.to(self.device))  # (B, num_classes)
        return logits.float().softmax(dim=-1).cpu()

    def predict(self, image: Image.Image | str | Path) -> dict[str, float]:
        """``{class name: probability}`` for one image (any mode PIL reads: RGBA, greyscale, ...)."""
        probs = self.predict_batch([image])[0]
        return {name: float(p) for name, p in zip(self.class_names, probs, strict=True)}

    @property
    def threshold(self) -> float:
        """P(fake) above which :meth:`says_fake` is True: ``config.json``'s ``threshold``, else 0.5."""
        return float(self.config.get("threshold", DEFAULT_THRESHOLD))

    def says_fake(self, probs: dict[str, float]) -> bool:
        """The decision for :meth:`predict`'s answer: P(fake) strictly above :attr:`threshold`."""
        return probs["fake_images"] > self.threshold

    def threshold_note(self) -> str:
        """Where the threshold comes from, in one sentence (the demo page shows it)."""
        if "threshold" not in self.config:
            default = "the default: no threshold chosen in config.json"
            return f"fake when P(fake) > {DEFAULT_THRESHOLD} ({default})"
        fpr = self.config.get("target_fpr")
        chosen = "" if fpr is None else f", chosen on validation images for {fpr:.0%} of real photos flagged"
        return f"fake when P(fake) > {self.threshold:.3f}{chosen}"


def split_record(root, seed: int, splits: dict[str, list], **fractions: float) -> dict[str, Any]:
    """``config.json``'s ``"split"``: the folder's name, seed, ``fractions``, each split's ``class/file``
    names and the training files' :func:`~helpers.train.trust.split_digest`. Lessons 03 to 06."""
    record: dict[str, Any] = {"root": Path(root).name, "seed": seed, **fractions}
    for name, samples in splits.items():
        record[f"{name}_files"] = sorted(Path(path).relative_to(root).as_posix() for path, *_ in samples)
    record["train_digest"] = trust.split_digest(record["train_files"])
    return record


def check_unseen(config: dict[str, Any], paths) -> None:
    """Raise :class:`DetectorError` if any of ``paths`` is a training image (by ``class/file``); a config
    without a recorded split gets a loud warning. Lessons 05, 06."""
    train = (config.get("split") or {}).get("train_files")
    if train is None:
        course.announce(
            "WARNING: this detector's config.json records no training files (made before the course\n"
            "recorded them), so nothing can check that these evaluation images are unseen: its scores\n"
            "may be inflated by images it trained on. Train it again to record its split."
        )
        return
    try:
        trust.check_disjoint(train, paths)
    except ValueError as err:
        raise DetectorError(
            f"{err} Use the val_files or test_files recorded in its config.json's split, or other images."
        ) from None


def check_transform_spec(spec: Any, image_size: int) -> None:
    """Raise ValueError naming the field unless ``spec`` fits a ViT at ``image_size``: whole ``resize >=
    crop == image_size`` up to ``MAX_IMAGE_SIZE``, 3 finite ``mean`` and ``std`` (> 0) values. Lesson 06."""
    if not isinstance(spec, dict):
        raise ValueError(f"'transform' must be an object with resize, crop, mean and std, not {spec!r}")
    for key in ("resize", "crop"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"transform {key}={value!r} must be a whole number of pixels")
        if not 1 <= value <= MAX_IMAGE_SIZE:
            raise ValueError(f"transform {key}={value} must be from 1 to {MAX_IMAGE_SIZE} pixels")
    if spec["crop"] > spec["resize"]:
        raise ValueError(f"transform crop={spec['crop']} is larger than resize={spec['resize']}")
    if spec["crop"] != image_size:
        raise ValueError(
            f"transform crop={spec['crop']} but the model takes {image_size}x{image_size} images"
        )
    for key in ("mean", "std"):
        values = spec.get(key)
        real = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
        if not (isinstance(values, list | tuple) and len(values) == 3 and all(map(real, values))):
            raise ValueError(f"transform {key}={values!r} must be 3 finite numbers, one per colour (R, G, B)")
    if not all(v > 0 for v in spec["std"]):
        raise ValueError(f"transform std={spec['std']!r}: every value must be above 0")


def check_weights_header(weights_path: Path, vit_config: ViTConfig) -> None:
    """Raise :class:`DetectorError` unless a safetensors header's names, shapes and float dtypes fit
    ``vit_config``'s model; reads the header only."""
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in ViT(vit_config).state_dict().items()}
    try:
        with safe_open(weights_path, framework="pt") as weights:
            found = {name: weights.get_slice(name) for name in weights.keys()}
            shapes = {name: tuple(found[name].get_shape()) for name in found}
            dtypes = {name: found[name].get_dtype() for name in found}
    except Exception as err:  # safetensors raises its own SafetensorError
        message = f"{weights_path} is not a readable safetensors file ({err}); export the detector again."
        raise DetectorError(message) from err
    problems = [f"missing {name!r}" for name in expected if name not in shapes]
    problems += [f"unexpected {name!r}" for name in shapes if name not in expected]
    problems += [
        f"{n!r} is {shapes[n]}, the config needs {s}" for n, s in expected.items() if shapes.get(n, s) != s
    ]
    problems += [
        f"{n!r} holds {dtype}, not floats" for n, dtype in dtypes.items() if dtype not in FLOAT_DTYPES
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DetectorError(
            f"{weights_path} does not fit the model described in {weights_path.parent / CONFIG_FILE}: "
            f"{shown}. Keep the two files of one export together, or export the detector again."
        )


def load_predictor(
    detector_dir: str | Path, device: str | torch.device = "cpu", precision: str = "auto"
) -> Predictor:
    """Rebuild what :func:`save_detector` saved in ``detector_dir`` (or a run's ``detector/``); a missing,
    invalid or inconsistent file, or non-finite weights, is a :class:`DetectorError`. Lessons 04-06."""
    device = torch.device(device)
    precision = resolve_precision(precision, device, inference=True)  # a bad value fails before loading
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
        if not all(isinstance(name, str) and name for name in class_names):
            raise ValueError(f"class_names={class_names!r} must all be non-empty strings")
        check_transform_spec(config["transform"], vit_config.image_size)
        if vit_config.in_channels != 3:
            raise ValueError(f"in_channels={vit_config.in_channels}, but images are loaded as RGB (3)")
        transform = build_eval_transform(config["transform"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DetectorError(
            f"{config_path} is not a valid {FORMAT} config: {err!r}. Fix it, or export the detector again."
        ) from err
    if config.get("format") != FORMAT:
        raise DetectorError(f"{config_path} has format {config.get('format')!r}, expected {FORMAT!r}")
    if len(class_names) != vit_config.num_classes:
        n = vit_config.num_classes
        raise DetectorError(
            f"{config_path} lists {len(class_names)} class names but the model has {n} outputs"
        )

    check_weights_header(weights_path, vit_config)  # before anything large is allocated
    model = ViT(vit_config)
    try:
        state_dict = load_file(weights_path)
        model.load_state_dict(state_dict)
    except Exception as err:  # safetensors raises its own error types
        raise DetectorError(
            f"{weights_path} does not fit the model described in {config_path}: {err}"
        ) from err
    for name, tensor in state_dict.items():
        if bad := int((~torch.isfinite(tensor)).sum()):
            raise DetectorError(
                f"{weights_path}: {name!r} holds {bad} NaN or infinite values of {tensor.numel()}; the "
                "training run diverged or the file is damaged. Export the detector from a good epoch again."
            )
    model.to(device).eval()
    return Predictor(model, transform, class_names, config, device, precision)
