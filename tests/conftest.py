"""Fixtures shared by several test files: thread settings, synthetic images and tiny models.

Every image a test needs is made here, in the test's own temporary folder; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from helpers.data.datasets import CLASS_NAMES
from helpers.data.transforms import eval_transform_spec
from helpers.model.vit import ViT, get_config
from helpers.serving.inference import save_detector


class _RunsCodeWhenUnpickled:
    """What a malicious checkpoint holds: unpickling it runs ``exec``, which writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


@pytest.fixture
def plant_code_on_unpickle(tmp_path):
    """``plant_code_on_unpickle(path) -> marker``: write a torch file to ``path`` that holds an epoch
    number and a tensor, like a checkpoint, plus an object that writes the file ``marker`` when unpickled.
    A loader that unpickles it (``torch.load(weights_only=False)``) runs the code; a safe one refuses it."""

    def plant(path: Path) -> Path:
        marker = tmp_path / "CODE-RAN"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": 1, "w": torch.zeros(2), "payload": _RunsCodeWhenUnpickled(marker)}, path)
        assert not marker.exists()
        return marker

    return plant


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and much slower when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def _random_rgb(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _textured_rgb(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, size=3)
    channels = [127 + 100 * np.sin(x / (7 + 5 * c) + y / (11 + 3 * c) + phase[c]) for c in range(3)]
    image = np.stack(channels, axis=-1) + rng.normal(0, 10, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _image_folder(
    root: Path, per_class: dict[str, int], size=(20, 16), seed: int = 0, redder_fakes: bool = False
) -> Path:
    rng = np.random.default_rng(seed)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            if redder_fakes:  # the red channel tells the classes apart: fakes in the upper half
                pixels[..., 0] = pixels[..., 0] // 2 + (128 if name == "fake_images" else 0)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def random_rgb():
    """``random_rgb(rng, width, height)``: an RGB image of uniform noise."""
    return _random_rgb


@pytest.fixture(scope="session")
def textured_rgb():
    """``textured_rgb(height, width, seed)``: (H, W, 3) uint8 smooth colour gradients plus noise."""
    return _textured_rgb


@pytest.fixture(scope="session")
def image_folder():
    """``image_folder(root, {"fake_images": 3, "real_images": 2}, size=(W, H), seed=0,
    redder_fakes=False)``: PNGs of noise in ImageFolder layout; returns ``root``. With
    ``redder_fakes`` a tiny ViT learns the classes in a few epochs."""
    return _image_folder


@pytest.fixture(scope="session")
def easy_folder(tmp_path_factory) -> Path:
    """30 + 30 PNGs of 32x32 that a tiny ViT learns in a few epochs (fakes are redder)."""
    root = tmp_path_factory.mktemp("easy")
    return _image_folder(root, dict.fromkeys(CLASS_NAMES, 30), size=(32, 32), redder_fakes=True)


# ---------------------------------------------------------------------------------------------
# Tiny models and a synthetic tensor problem
# ---------------------------------------------------------------------------------------------


def _tiny_vit(seed: int = 0, image_size: int = 32) -> ViT:
    torch.manual_seed(seed)
    return ViT(get_config("vit_tiny", image_size=image_size, depth=2, dim=64, heads=2, mlp_dim=128))


def _synthetic_images(n: int, seed: int, image_size: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2  # (n,) balanced
    images = torch.randn(n, 3, image_size, image_size, generator=g)  # (n, 3, H, W)
    images[:, 0] += (labels.float() * 2 - 1).view(n, 1, 1) * 0.8  # class 1 redder, class 0 less red
    return TensorDataset(images, labels)


def _synthetic_loaders(batch_size: int = 16, generator: bool = True):
    train = DataLoader(
        _synthetic_images(64, seed=1),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator() if generator else None,
    )
    val = DataLoader(_synthetic_images(32, seed=2), batch_size=32)
    test = DataLoader(_synthetic_images(32, seed=3), batch_size=32)
    return train, val, test


def _tiny_detector(folder: Path, seed: int = 0) -> tuple[ViT, Path]:
    torch.manual_seed(seed)
    model = ViT(get_config("vit_tiny", image_size=32, depth=1)).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)  # a zero head would say 50/50 to every image
    spec = eval_transform_spec(32, pretrained=False)
    return model, save_detector(model, folder, CLASS_NAMES, spec, "vit_tiny")


@pytest.fixture(scope="session")
def tiny_vit():
    """``tiny_vit(seed=0, image_size=32)``: a 2-block ViT of width 64, seeded."""
    return _tiny_vit


@pytest.fixture(scope="session")
def synthetic_loaders():
    """``synthetic_loaders(batch_size=16, generator=True)``: ``(train, val, test)`` loaders of
    64/32/32 random 32x32 tensors whose class shows in the mean of the red channel."""
    return _synthetic_loaders


@pytest.fixture(scope="session")
def tiny_detector():
    """``tiny_detector(folder, seed=0)``: ``(model, folder)``, a 1-block ViT at 32 px with a random
    head, exported to ``folder`` as a detector."""
    return _tiny_detector
