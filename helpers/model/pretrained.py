"""torchvision's ImageNet ViT-B/16 (``IMAGENET1K_V1``, 81.1 % top-1) in our ViT, with a new head (lesson 04);
read with ``weights_only=True``, and announced as NOT THE PUBLISHED WEIGHTS if the sha256 is not its name's.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import urllib.error
import urllib.request
from pathlib import Path

import torch
from torchvision.models import ViT_B_16_Weights

from helpers import course
from helpers.model.vit import ViT, get_config
from helpers.train.recipes import Recipe

WEIGHTS = ViT_B_16_Weights.IMAGENET1K_V1
VIT_B16_WEIGHTS_FILE = "vit_b_16-c867db91.pth"
VIT_B16_URL = WEIGHTS.url  # https://download.pytorch.org/models/vit_b_16-c867db91.pth
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's convention: name-<sha256 prefix>.ext


class PretrainedWeightsUnavailable(RuntimeError):
    """The ImageNet ViT-B/16 weights are neither in the torch hub cache nor downloadable."""


def weights_cache_path() -> Path:
    """Where torchvision keeps (or would keep) the ViT-B/16 weights. Lesson 04."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VIT_B16_WEIGHTS_FILE


def sha256_prefix(path: str | Path, length: int = 8) -> str:
    """The first ``length`` hex digits of the file's sha256 (about a second for the 330 MB weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


_checked: dict[tuple[str, int, int], bool] = {}  # (path, size, mtime) -> matches; each file hashed once


def check_published_weights(path: str | Path | None = None) -> bool:
    """Whether a weights file (default: the cached ViT-B/16) has the sha256 its name promises; if not,
    announce NOT THE PUBLISHED WEIGHTS, once per file. Lessons 02-05."""
    path = Path(path) if path is not None else weights_cache_path()
    if not path.is_file():
        raise FileNotFoundError(f"no weights file {path} to check; load the weights first")
    named = HASH_IN_NAME.search(path.name)
    if named is None:
        raise ValueError(f"{path.name} has no sha256 prefix in its name (name-<hex>.pth), nothing to check")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _checked:
        actual = sha256_prefix(path, len(named[1]))
        _checked[key] = actual == named[1]
        if not _checked[key]:
            course.announce(
                f"NOT THE PUBLISHED WEIGHTS: {path}\nhas sha256 {actual}..., but its name promises "
                f"{named[1]}...: other weights under the published name (a stand-in, or a damaged file).\n"
                f"Results will not be the lesson's. Delete the file to download the published {path.name}."
            )
    return _checked[key]


def _check_reachable(url: str, timeout: float) -> None:
    """Raise ``OSError`` within ``timeout`` seconds when ``url`` cannot be reached."""
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=timeout):
        pass


def load_vit_b16_state_dict(timeout: float = 10.0) -> dict[str, torch.Tensor]:
    """The ImageNet ViT-B/16 state dict, cached or downloaded (~330 MB); offline, within ``timeout`` s a
    :class:`PretrainedWeightsUnavailable` saying what to do."""
    path = weights_cache_path()
    if not path.is_file():
        try:
            _check_reachable(VIT_B16_URL, timeout)
        except OSError as err:  # URLError and HTTPError are OSErrors
            raise PretrainedWeightsUnavailable(
                f"The ImageNet ViT-B/16 weights {VIT_B16_WEIGHTS_FILE} are not in the torch hub cache "
                f"folder {path.parent} and the download failed: {err}.\n"
                f"Fix: connect to the internet, or download {VIT_B16_URL} on another machine and copy it "
                f"to {path} (set TORCH_HOME to use another cache folder).\n"
                "In small mode you may instead go on with RANDOM weights (allow_random=True, or "
                "--allow-random-weights on the command line); the numbers then mean little."
            ) from err
    # Cache first, else download; check_hash verifies a download against the sha256 prefix in its name.
    try:
        state_dict = WEIGHTS.get_state_dict(progress=True, weights_only=True, check_hash=True)
    except pickle.UnpicklingError as error:  # weights_only=True met more than plain tensors
        named = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"it would call {named[1]}" if named else "it is not a torch weights file"
        raise ValueError(
            f"{path} is not plain tensors ({what}) and was refused: nothing in it ran. It is not the "
            f"published {VIT_B16_WEIGHTS_FILE}; delete it to download the published weights."
        ) from error
    check_published_weights(path)
    return state_dict


def load_pretrained_vit_b16(
    num_classes: int | None, image_size: int = 224, allow_random: bool = False, timeout: float = 10.0
) -> ViT:
    """Our ViT-B/16 with ImageNet weights and a new zero head (``num_classes=None``: ImageNet's); without the
    weights :class:`PretrainedWeightsUnavailable`, or with ``allow_random`` a random one.
    Lessons 04 and 05."""
    try:
        model = ViT.from_torchvision(load_vit_b16_state_dict(timeout=timeout), image_size=image_size)
    except PretrainedWeightsUnavailable:
        if not allow_random:
            raise
        course.announce(  # printed once, not also a warning (a notebook would repeat it in red)
            f"RANDOM WEIGHTS: {VIT_B16_WEIGHTS_FILE} is not in {weights_cache_path().parent} and could "
            "not be downloaded, so this ViT-B/16 starts from random weights: expect chance-level results."
        )
        model = ViT(get_config("vit_b16", image_size=image_size, num_classes=num_classes or 1000))
    if num_classes is not None:
        model.reset_head(num_classes)
    return model


def freeze_for_recipe(model: ViT, recipe: Recipe) -> ViT:
    """Freeze all but ``model.head`` unless ``recipe.train_backbone`` (linear probe). Lesson 04."""
    model.requires_grad_(recipe.train_backbone)
    model.head.requires_grad_(True)
    return model
