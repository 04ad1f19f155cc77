"""Datasets for the course: a built-in toy set, the real "Fake or Real" set, safe loading, splits, transforms.

Both datasets use torchvision's ImageFolder layout, one folder per class, sorted names = labels::

    root/fake_images/*.png    label 0
    root/real_images/*.png    label 1

- **Toy set** (:func:`make_toy_dataset`, seconds on a CPU): crops of the photographs bundled with
  scikit-image. The "fakes" went through a stand-in generator that halves the resolution and
  upsamples it again with a transposed convolution, the layer that leaves periodic "checkerboard"
  fingerprints in GAN images (Odena et al. 2016; Zhang et al. 2019; Durall et al. 2020; Frank et al.
  2020). Colour statistics are matched, so only the fingerprint tells the classes apart.
- **Real set** (:func:`download_fake_or_real`, ~9 GB): the train split of the Hugging Face dataset
  ``mncai/Fake_or_Real_Competition_Dataset`` (6,750 images, apache-2.0).

Loading (:func:`load_image_rgb`) turns any PIL-readable file into RGB or raises :class:`ImageLoadError`
naming the file; :func:`find_images` indexes a folder once and skips undecodable files with one warning;
:func:`create_dataloaders` makes a seeded, stratified train/val/test split that never drops an image.
Every transform of the course is built here from ImageNet's mean and std.

Command line::

    python -m helpers.data make-toy --out data/toy [--images-per-class N --image-size S --seed K]
    python -m helpers.data download --out data/fake_or_real [--max-side 256]
    python -m helpers.data figures --data data/toy --out figures
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from huggingface_hub import hf_hub_download
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm

CLASS_NAMES = ("fake_images", "real_images")  # sorted, as ImageFolder orders them: fake = 0, real = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel mean of ImageNet, RGB in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)  # per-channel standard deviation of ImageNet
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
LAYOUT_HELP = "root/fake_images/*.png and root/real_images/*.png (one sub-folder per class)"
MARKER = ".complete"  # written last, after a dataset folder is complete

TOY_IMAGES_PER_CLASS = 500  # default toy size: ~3 s to generate, tiny ViT >= 90 % in 1-2 CPU minutes
TOY_VERSION = 2  # bump when the toy recipe changes, so old folders are regenerated

FAKE_OR_REAL_REPO = "mncai/Fake_or_Real_Competition_Dataset"
FAKE_OR_REAL_FILE = "train.zip"
FAKE_OR_REAL_COUNT = 6750  # images in train.zip: fake_images + real_images
FAKE_OR_REAL_PAGE = f"https://huggingface.co/datasets/{FAKE_OR_REAL_REPO}"
FAKE_OR_REAL_URL = f"{FAKE_OR_REAL_PAGE}/resolve/main/{FAKE_OR_REAL_FILE}"


# --------------------------------------------------------------------------------------------------
# Loading one image
# --------------------------------------------------------------------------------------------------


class ImageLoadError(ValueError):
    """A file could not be decoded as an image (empty, truncated, not an image, or too large)."""


def _describe(path_or_fileobj: str | os.PathLike | BinaryIO) -> str:
    if isinstance(path_or_fileobj, str | os.PathLike):
        return str(path_or_fileobj)
    return str(getattr(path_or_fileobj, "name", "<in-memory file>"))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, the way an image viewer would show it."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit (PNG/TIFF): PIL's convert("RGB") would clip at 255, so scale 0..65535 -> 0..255.
        # Mode "I" (32-bit) holding values <= 255 is treated as 8-bit data.
        values = np.asarray(image).astype(np.float64)
        if image.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) <= 1.0:  # floats in [0, 1]
            values = values * 255.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        # Transparent pixels are shown on white, as in a browser.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image_rgb(
    path_or_fileobj: str | os.PathLike | BinaryIO | Image.Image, *, draft_size: int | None = None
) -> Image.Image:
    """Open any PIL-decodable image (or take an opened PIL image) and return it upright (EXIF) in mode "RGB".

    Handles RGBA/LA/P with transparency (composited on white), L, 1-bit, CMYK, 16-bit PNG/TIFF
    (scaled to 8 bits), and animated GIF/WebP/TIFF (first frame). ``draft_size`` lets a JPEG decode
    at a reduced scale (at least that many pixels per side), which is faster.

    Raises:
        ImageLoadError: the file is empty, truncated, not an image, or larger than PIL's
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``). The message names the file.
        FileNotFoundError: the path does not exist.
    """
    if isinstance(path_or_fileobj, Image.Image):  # already decoded, e.g. an upload a UI opened for us
        image = path_or_fileobj
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # first frame of an animation
        return _to_rgb(ImageOps.exif_transpose(image))
    name = _describe(path_or_fileobj)
    try:
        with Image.open(path_or_fileobj) as image:
            image.seek(0)  # first frame of an animation
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()  # full decode: truncated data fails here, not later in a DataLoader
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"{name}: refused to decode, more pixels than PIL's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}): {error}"
        ) from error
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, MemoryError) as error:
        # PIL raises these for empty, truncated, corrupt or unknown files (UnidentifiedImageError is an OSError).
        raise ImageLoadError(
            f"{name}: cannot be decoded as an image ({type(error).__name__}: {error})"
        ) from error


# --------------------------------------------------------------------------------------------------
# Indexing a folder, the Dataset, splits and DataLoaders
# --------------------------------------------------------------------------------------------------


def _layout_error(root: Path, problem: str) -> ValueError:
    return ValueError(
        f"{root}: {problem}. Expected an image folder with at least two classes: {LAYOUT_HELP}. "
        "Make the toy set with `python -m helpers.data make-toy --out data/toy` or fetch the real one "
        "with `python -m helpers.data download --out data/fake_or_real`."
    )


def _list_class_files(folder: Path) -> list[Path]:
    """Files with an image extension under ``folder`` (recursive, sorted), hidden files and macOS junk left out."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for filename in sorted(filenames):
            if not filename.startswith(".") and filename.lower().endswith(IMAGE_EXTENSIONS):
                files.append(Path(dirpath) / filename)
    return files


def _decode_problem(path: Path) -> str | None:
    """None if ``path`` decodes (JPEGs at about 1/8 scale: all compressed data is still read), else why not."""
    try:
        load_image_rgb(path, draft_size=64)
    except ImageLoadError as error:
        return str(error)
    return None


def find_images(root: str | os.PathLike, *, check: bool = True) -> tuple[list[tuple[Path, int]], list[str]]:
    """Index an ImageFolder tree once: ``([(path, label), ...], class_names)``.

    Class names are the sub-folders of ``root`` in sorted order (``fake_images`` = 0, ``real_images``
    = 1). Files without an image extension are ignored. With ``check=True`` every image is decoded
    once (JPEGs at 1/8 scale, which still reads all of the compressed data), so empty, truncated,
    corrupt or oversized files are found now rather than in the middle of an epoch; they are
    skipped with ONE warning that names them.

    Raises:
        ValueError: ``root`` is missing, or has fewer than two class folders with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise _layout_error(root, "folder not found" if not root.exists() else "is not a folder")
    class_dirs = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX"
    )
    files_per_class = {d.name: _list_class_files(d) for d in class_dirs}
    class_names = list(files_per_class)
    if len(class_names) < 2 or not all(files_per_class.values()):
        found = ", ".join(f"{n}/ ({len(f)} images)" for n, f in files_per_class.items()) or "no sub-folders"
        raise _layout_error(root, f"found {found}")

    candidates = [(path, label) for label, name in enumerate(class_names) for path in files_per_class[name]]
    problems: list[str | None] = [None] * len(candidates)
    if check:
        with ThreadPoolExecutor(
            max_workers=min(4, os.cpu_count() or 1)
        ) as pool:  # PIL decodes without the GIL
            problems = list(pool.map(_decode_problem, [path for path, _ in candidates]))
    samples = [sample for sample, problem in zip(candidates, problems, strict=True) if problem is None]
    skipped = [problem for problem in problems if problem is not None]
    if skipped:
        shown = "\n  ".join(skipped[:20]) + (
            f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        )
        warnings.warn(f"Skipped {len(skipped)} undecodable file(s) under {root}:\n  {shown}", stacklevel=2)
    if len({label for _, label in samples}) < 2:
        raise _layout_error(root, "fewer than two classes have a decodable image")
    return samples, class_names


class ImageFolderDataset(Dataset):
    """``(image tensor, label)`` pairs from a list of ``(path, label)`` samples (see :func:`find_images`).

    Images are decoded with :func:`load_image_rgb`, then passed through ``transform``.
    """

    def __init__(self, samples: Sequence[tuple[str | os.PathLike, int]], transform: Callable | None = None):
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.targets = [label for _, label in self.samples]  # as in torchvision's ImageFolder
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = load_image_rgb(path)
        if self.transform is not None:
            image = self.transform(image)  # (3, H, W) tensor for the course's transforms
        return image, label


def stratified_split(
    targets: Sequence[int], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42
) -> tuple[list[int], list[int], list[int]]:
    """Split indices into train/val/test so that every split keeps the class proportions.

    For each class with n images, ``round(n * fraction)`` go to val and to test (at least one when the
    fraction is above zero), the rest to train. The same ``seed`` gives the same split.
    Returns three sorted, disjoint lists of indices that together cover ``range(len(targets))``.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 to leave training images, got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction}"
        )
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for label in np.unique(targets):
        indices = rng.permutation(np.flatnonzero(targets == label))
        n = len(indices)
        n_val = max(round(n * val_fraction), 1) if val_fraction > 0 else 0
        n_test = max(round(n * test_fraction), 1) if test_fraction > 0 else 0
        if n - n_val - n_test < 1:
            raise ValueError(
                f"class {label} has only {n} image(s): too few for val_fraction={val_fraction} and "
                f"test_fraction={test_fraction} plus at least one training image"
            )
        val += indices[:n_val].tolist()
        test += indices[n_val : n_val + n_test].tolist()
        train += indices[n_val + n_test :].tolist()
    return sorted(train), sorted(val), sorted(test)


def default_num_workers() -> int:
    """DataLoader worker processes: 2 (Colab and laptops have 2+ cores), fewer on 1 core, 0 if unknown."""
    try:
        return min(2, os.cpu_count() or 0)
    except NotImplementedError:
        return 0


def create_dataloaders(
    data_dir: str | os.PathLike,
    train_transform: Callable,
    eval_transform: Callable | None = None,
    batch_size: int = 32,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    num_workers: int | None = None,
) -> tuple[DataLoader, DataLoader, DataLoader, list[str]]:
    """Index ``data_dir`` once, split it (stratified, seeded) and wrap each split in a DataLoader.

    - train: ``train_transform``, shuffled by a generator seeded with ``seed``.
    - val and test: ``eval_transform`` (``None`` = use ``train_transform``, for a deterministic one),
      in file order, and every image is kept (no ``drop_last``).
    ``num_workers=None`` picks :func:`default_num_workers`; workers persist across epochs.
    Returns ``(train_loader, val_loader, test_loader, class_names)``; each ``loader.dataset`` is an
    :class:`ImageFolderDataset` with ``.samples`` and ``.targets``.
    """
    samples, class_names = find_images(data_dir)
    train_idx, val_idx, test_idx = stratified_split(
        [label for _, label in samples], val_fraction, test_fraction, seed
    )
    eval_transform = train_transform if eval_transform is None else eval_transform
    num_workers = default_num_workers() if num_workers is None else num_workers
    common = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)

    def subset(indices: list[int], transform: Callable) -> ImageFolderDataset:
        return ImageFolderDataset([samples[i] for i in indices], transform)

    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(subset(train_idx, train_transform), shuffle=True, generator=generator, **common)
    val_loader = DataLoader(subset(val_idx, eval_transform), shuffle=False, **common)
    test_loader = DataLoader(subset(test_idx, eval_transform), shuffle=False, **common)
    return train_loader, val_loader, test_loader, class_names


# --------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------


def eval_transform_spec(image_size: int, pretrained: bool) -> dict[str, Any]:
    """The JSON-able description of the eval transform that checkpoints store.

    From scratch: resize the shorter side to ``image_size`` and centre-crop it. Pretrained (ImageNet
    recipe): resize to ``image_size * 256 / 224`` and centre-crop ``image_size``; at 224 this is
    exactly ``ViT_B_16_Weights.IMAGENET1K_V1.transforms()``.
    """
    resize = round(image_size * 256 / 224) if pretrained else image_size
    return {
        "resize": int(resize),
        "crop": int(image_size),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }


def build_eval_transform(spec: dict[str, Any]) -> Callable:
    """PIL image -> normalised float tensor (3, crop, crop), with no randomness: Resize, CenterCrop, Normalize."""
    missing = {"resize", "crop", "mean", "std"} - set(spec)
    if missing:
        raise ValueError(
            f"transform spec {spec} is missing {sorted(missing)}; make one with eval_transform_spec()"
        )
    interpolation = T.InterpolationMode(spec.get("interpolation", "bilinear"))
    return T.Compose(
        [
            T.Resize(int(spec["resize"]), interpolation=interpolation, antialias=True),  # shorter side
            T.CenterCrop(int(spec["crop"])),
            T.ToTensor(),  # (3, H, W) float in [0, 1]
            T.Normalize(list(spec["mean"]), list(spec["std"])),
        ]
    )


def scratch_transforms(image_size: int, augment: bool = True) -> tuple[Callable, Callable]:
    """``(train, eval)`` transforms for training a ViT from scratch at ``image_size``.

    Training augmentation is horizontal flips and translations (reflect-pad by 1/8 of the size, then
    a random crop): neither resamples pixels, so the generator fingerprints survive. Random resized
    crops would interpolate the image and blur away the very artifacts the model should find.
    """
    eval_tf = build_eval_transform(eval_transform_spec(image_size, pretrained=False))
    if not augment:
        return eval_tf, eval_tf
    train_tf = T.Compose(
        [
            T.Resize(image_size, antialias=True),  # no-op when the image already has this size
            T.CenterCrop(image_size),
            T.RandomHorizontalFlip(),
            T.RandomCrop(image_size, padding=image_size // 8, padding_mode="reflect"),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return train_tf, eval_tf


def pretrained_transforms(image_size: int = 224) -> tuple[Callable, Callable]:
    """``(train, eval)`` transforms for fine-tuning an ImageNet ViT: the ImageNet eval recipe, plus
    a random (instead of centre) crop and horizontal flips for training."""
    spec = eval_transform_spec(image_size, pretrained=True)
    eval_tf = build_eval_transform(spec)
    train_tf = T.Compose(
        [
            T.Resize(spec["resize"], antialias=True),
            T.RandomCrop(image_size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return train_tf, eval_tf


# --------------------------------------------------------------------------------------------------
# Writing datasets safely: build in a temporary sibling folder, rename, write the marker last
# --------------------------------------------------------------------------------------------------


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_marker(folder: Path, info: dict) -> None:
    temporary = folder / (MARKER + ".tmp")
    temporary.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, folder / MARKER)  # atomic: the marker is either absent or complete


def _marker_matches(folder: Path, config: dict) -> bool:
    marker = _read_marker(folder)
    return marker is not None and all(marker.get(key) == value for key, value in config.items())


def _build_folder(target: Path) -> Path:
    """A new, uniquely named hidden folder next to ``target`` to build it in (see :func:`_publish`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    building.chmod(0o755)  # mkdtemp makes it private (0o700); the dataset should be readable like any folder
    return building


def _publish(building: Path, target: Path, config: dict) -> None:
    """Rename the finished folder ``building`` (marker inside) to ``target``, replacing an old version.

    The rename is atomic, so ``target`` is either absent, the old version, or complete. If another
    process published the same dataset first, its copy is kept.
    """
    if target.exists():
        shutil.rmtree(target)
    try:
        os.replace(building, target)
    except OSError:
        if not _marker_matches(target, config):
            raise


def _save_png(array: np.ndarray, path: Path) -> None:
    """PNG without timestamps or other metadata, so the same pixels always give the same bytes."""
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


# --------------------------------------------------------------------------------------------------
# The toy dataset
# --------------------------------------------------------------------------------------------------

# Stand-in generators: each one halves the resolution (2x2 average), then doubles it again with a
# stride-2 transposed convolution whose separable 1-D kernel is given here. Output pixels at even and
# odd positions collect different taps of the kernel; when those sums differ the output carries a
# period-2 "checkerboard" (Odena et al. 2016), a peak at the Nyquist frequency of its spectrum.
# (Plain pixel repetition, kernel (1, 1), leaves no such peak and is much harder for a small ViT.)
TOY_GENERATORS = {
    "deconv_4tap": (0.3, 1.0, 0.6, 0.1),  # even outputs: taps 1 + 3 = 1.1, odd outputs: 0 + 2 = 0.9
    "deconv_3tap": (0.45, 1.0, 0.45),  # even outputs: 1.0, odd outputs: 0.45 + 0.45 = 0.9
    "deconv_5tap": (0.05, 0.45, 0.85, 0.45, 0.1),  # wide and smooth, still 1.0 versus 0.9
}


# Photographs shipped inside the scikit-image package (``skimage/data/``): read straight from its
# folder, so nothing is ever downloaded. Grey ones are used as grey RGB images.
TOY_SOURCE_FILES = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "ihc.png", "hubble_deep_field.jpg",
    "retina.jpg", "motorcycle_left.png", "camera.png", "coins.png", "moon.png", "grass.png",
    "gravel.png", "brick.png",
)  # fmt: skip


def _toy_sources() -> list[np.ndarray]:
    """The photographs bundled inside scikit-image, as (H, W, 3) uint8 arrays."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    found = [folder / name for name in TOY_SOURCE_FILES if (folder / name).is_file()]
    if len(found) < 4:
        raise RuntimeError(
            f"only {len(found)} of the photographs {TOY_SOURCE_FILES} found in {folder}; "
            "reinstall scikit-image (pip install --force-reinstall scikit-image)"
        )
    return [np.asarray(load_image_rgb(path)) for path in found]


def _random_crop(rng: np.random.Generator, sources: list[np.ndarray], size: int) -> np.ndarray:
    """A textured square crop at a random scale and position, flipped/rotated, resized to (size, size, 3) in [0, 1]."""
    for _ in range(50):
        source = sources[rng.integers(len(sources))]
        height, width = source.shape[:2]
        side = int(np.clip(min(height, width) * rng.uniform(0.15, 0.7), size, min(height, width)))
        top, left = rng.integers(height - side + 1), rng.integers(width - side + 1)
        crop = Image.fromarray(source[top : top + side, left : left + side])
        crop = np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
        if crop.std() > 0.05:  # skip flat sky, black borders
            break
    crop = np.rot90(crop, k=rng.integers(4))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)  # (size, size, 3)


def _transposed_conv_upsample(low: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """Double height and width with a stride-2 transposed convolution and a separable 1-D kernel.

    Along each axis, input pixel i adds ``kernel[j] * low[i]`` to output pixel ``2 i + j - (len(kernel) - 1) // 2``.
    The borders are padded by repeating the edge pixels, so only the kernel leaves a trace.
    """
    offset = (len(kernel) - 1) // 2
    out = low  # (h, w, 3)
    for axis in (0, 1):
        x = np.moveaxis(out, axis, 0)  # upsample along the first axis: (n, ...)
        n = x.shape[0]
        padded = np.pad(x, [(2, 2)] + [(0, 0)] * (x.ndim - 1), mode="edge")  # (n + 4, ...)
        spread = np.zeros((2 * (n + 4) + len(kernel), *x.shape[1:]), dtype=np.float32)
        for j, weight in enumerate(kernel):
            spread[j : j + 2 * (n + 4) : 2] += weight * padded  # the stride-2 scatter of a transposed conv
        out = np.moveaxis(spread[4 + offset : 4 + offset + 2 * n], 0, axis)  # drop the padding: (2n, ...)
    return out


def _toy_fake(real_like: np.ndarray, generator: str) -> np.ndarray:
    """Pass a crop through a stand-in generator, then match its per-channel mean and std to the crop's."""
    height, width, channels = real_like.shape
    low = real_like.reshape(height // 2, 2, width // 2, 2, channels).mean(axis=(1, 3))  # (H/2, W/2, 3)
    fake = _transposed_conv_upsample(low, TOY_GENERATORS[generator])  # (H, W, 3)
    mean, std = real_like.mean(axis=(0, 1)), real_like.std(axis=(0, 1))
    fake_mean, fake_std = fake.mean(axis=(0, 1)), fake.std(axis=(0, 1))
    return (fake - fake_mean) / np.maximum(fake_std, 1e-6) * std + mean


def make_toy_dataset(
    root: str | os.PathLike, images_per_class: int = TOY_IMAGES_PER_CLASS, image_size: int = 64, seed: int = 0
) -> Path:
    """Write the toy fake-versus-real dataset to ``root`` (PNG, ImageFolder layout) and return ``root``.

    Real images: random crops (random scale, position, rotation, flip) of photographs bundled with
    scikit-image, resized to ``image_size``. Fake images: other crops made the same way, passed through
    one of :data:`TOY_GENERATORS`, with per-channel mean and std matched to the crop they came from,
    so colour statistics cannot tell the classes apart; only the upsampling fingerprint can.

    The same arguments give byte-identical files. A finished folder (marker file ``.complete`` with
    the same arguments) is reused; an unfinished or different one is rebuilt. ``root/manifest.csv``
    lists every file with its label and generator.
    """
    root = Path(root)
    if image_size % 2 or image_size < 8:
        raise ValueError(f"image_size must be even and >= 8 (the generator halves it), got {image_size}")
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    config = {
        "dataset": "toy",
        "version": TOY_VERSION,
        "images_per_class": images_per_class,
        "image_size": image_size,
        "seed": seed,
    }
    if _marker_matches(root, config):
        return root
    if root.exists() and any(root.iterdir()) and (_read_marker(root) or {}).get("dataset") != "toy":
        raise ValueError(
            f"{root} exists, is not empty and holds no toy dataset; pick another folder or delete it"
        )

    building = _build_folder(root)
    try:
        sources = _toy_sources()
        generators = sorted(TOY_GENERATORS)
        rows = ["file,label,generator"]
        for label, name in enumerate(CLASS_NAMES):
            (building / name).mkdir()
            for i in range(images_per_class):
                rng = np.random.default_rng([seed, label, i])  # one stream per image: order-independent
                crop = _random_crop(rng, sources, image_size)
                generator = "none"
                if name == "fake_images":
                    generator = generators[i % len(generators)]
                    crop = _toy_fake(crop, generator)
                pixels = np.clip(np.round(crop * 255.0), 0, 255).astype(np.uint8)
                filename = f"{name.split('_')[0]}_{i:05d}.png"
                _save_png(pixels, building / name / filename)
                rows.append(f"{name}/{filename},{label},{generator}")
        (building / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        _write_marker(building, {**config, "count": 2 * images_per_class})
        _publish(building, root, config)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # already gone after a successful rename
    return root


# --------------------------------------------------------------------------------------------------
# The real dataset
# --------------------------------------------------------------------------------------------------


def _manual_download_help(zip_path: Path, error: BaseException | None = None) -> str:
    reason = (
        f"Downloading {FAKE_OR_REAL_FILE} from the Hugging Face Hub failed ({type(error).__name__}: {error}). "
        if error
        else ""
    )
    return (
        f"{reason}To place the data by hand: download {FAKE_OR_REAL_FILE} (about 9 GB) from {FAKE_OR_REAL_URL} "
        f"(dataset page: {FAKE_OR_REAL_PAGE}), save it as {zip_path}, and run this again "
        f"(python -m helpers.data download --out {zip_path.parent}); it is then used without the network. "
        "If you are offline on purpose (HF_HUB_OFFLINE=1), use the toy dataset instead: get_dataset('toy')."
    )


def _fetch_zip(root: Path) -> Path:
    """``root/train.zip`` if placed there by hand, else the Hub's cached copy (downloaded if needed)."""
    by_hand = root / FAKE_OR_REAL_FILE
    if by_hand.is_file():
        return by_hand
    try:
        # Timeouts come from huggingface_hub (etag_timeout here, HF_HUB_DOWNLOAD_TIMEOUT for reads),
        # and HF_HUB_OFFLINE=1 makes this fail at once unless the file is already cached.
        return Path(
            hf_hub_download(
                repo_id=FAKE_OR_REAL_REPO, filename=FAKE_OR_REAL_FILE, repo_type="dataset", etag_timeout=30
            )
        )
    except Exception as error:  # network, offline mode, Hub errors: all mean "no zip"
        raise RuntimeError(_manual_download_help(by_hand, error)) from error


def _find_class_root(folder: Path) -> Path | None:
    """The folder at or below ``folder`` (2 levels at most) that holds both class folders."""
    candidates = [folder, *folder.glob("*"), *folder.glob("*/*")]
    for candidate in candidates:
        if candidate.name != "__MACOSX" and all((candidate / name).is_dir() for name in CLASS_NAMES):
            return candidate
    return None


def _count_images(class_root: Path) -> int:
    return sum(len(_list_class_files(class_root / name)) for name in CLASS_NAMES)


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, open(target, "wb") as destination:
        shutil.copyfileobj(source, destination, length=1 << 20)


def _extract_zip(zip_path: Path, into: Path) -> None:
    """Extract every member of ``zip_path`` below ``into``, with a progress bar; refuses paths outside it."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [
                m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX")
            ]
            with tqdm(
                total=sum(m.file_size for m in members),
                unit="B",
                unit_scale=True,
                desc=f"Extracting {zip_path.name}",
            ) as bar:
                for info in members:
                    target = (into / info.filename).resolve()
                    if not target.is_relative_to(into.resolve()):
                        raise RuntimeError(
                            f"{zip_path}: member {info.filename!r} would be written outside {into}"
                        )
                    _extract_member(archive, info, target)
                    bar.update(info.file_size)
    except zipfile.BadZipFile as error:
        raise RuntimeError(
            f"{zip_path} is not a valid zip file ({error}); it may be an incomplete download: "
            "delete it and run this again."
        ) from error


def download_fake_or_real(
    root: str | os.PathLike, max_side: int | None = None, *, expected_count: int = FAKE_OR_REAL_COUNT
) -> Path:
    """Fetch and extract the Fake or Real Competition train split; return the folder with the class folders.

    Steps, each skipped when already done (a second call does nothing):

    1. ``train.zip`` (~9 GB) from the Hugging Face dataset ``mncai/Fake_or_Real_Competition_Dataset``
       via ``huggingface_hub`` (cached), or ``root/train.zip`` if you placed it there by hand.
    2. Extract into a temporary folder next to the target, check the layout and that it holds
       ``expected_count`` images, rename it to ``root/train`` and only then write ``root/.complete``.
       An interrupted run leaves no folder that looks complete; the next run starts the extraction over.
    3. With ``max_side``, also write a copy whose shorter sides are at most ``max_side`` pixels to
       ``<root>_max<max_side>/train`` (see :func:`make_resized_copy`) and return that instead.

    Raises:
        RuntimeError: the download failed (offline, Hub error) or the archive is not as expected; the
            message says how to place the file by hand.
    """
    root = Path(root)
    data = root / "train"
    marker = _read_marker(root)
    if not (marker and marker.get("count") == expected_count and data.is_dir()):
        if data.is_dir():  # placed by hand, or renamed before the marker was written
            count = _count_images(data)
            if count != expected_count or _find_class_root(data) != data:
                raise RuntimeError(
                    f"{data} exists but holds {count} images in {sorted(p.name for p in data.iterdir())}, "
                    f"expected {expected_count} in {list(CLASS_NAMES)}. Delete {data} and run this again."
                )
        else:
            zip_path = _fetch_zip(root)
            root.mkdir(parents=True, exist_ok=True)
            partial = root / ".train.partial"
            shutil.rmtree(partial, ignore_errors=True)  # left over from an interrupted run
            _extract_zip(zip_path, partial)
            class_root = _find_class_root(partial)
            if class_root is None:
                shutil.rmtree(partial, ignore_errors=True)
                raise RuntimeError(
                    f"{zip_path} has no folder with {' and '.join(CLASS_NAMES)} inside: not the expected "
                    f"archive. {_manual_download_help(root / FAKE_OR_REAL_FILE)}"
                )
            count = _count_images(class_root)
            if count != expected_count:
                shutil.rmtree(partial, ignore_errors=True)
                raise RuntimeError(
                    f"{zip_path} holds {count} images, expected {expected_count}; it may be incomplete "
                    f"or a different file. {_manual_download_help(root / FAKE_OR_REAL_FILE)}"
                )
            os.replace(class_root, data)
            shutil.rmtree(partial, ignore_errors=True)
        _write_marker(
            root,
            {
                "dataset": "fake_or_real",
                "source": f"{FAKE_OR_REAL_REPO}/{FAKE_OR_REAL_FILE}",
                "count": expected_count,
            },
        )
    if max_side is None:
        return data
    copy_root = root.parent / f"{root.name}_max{max_side}"
    return make_resized_copy(data, copy_root / "train", max_side)


def _resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Output (width, height) with the shorter side = ``short_side``, computed as torchvision's Resize does."""
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def make_resized_copy(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, max_side: int) -> Path:
    """Copy an ImageFolder tree, reducing every image's shorter side to ``max_side`` pixels (PNG).

    Decoding a 1.5-megapixel JPEG costs far more than training on its 224x224 crop; a copy at
    ``max_side=256`` (the pretrained eval resize at 224) loads many times faster. The resize is the
    same bilinear, antialiased one as ``build_eval_transform``, so Resize(256) then finds nothing to do.
    Smaller images are copied unchanged. Returns ``dst_dir``; reused when its marker matches.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    samples, class_names = find_images(src_dir, check=False)
    config = {
        "dataset": "resized_copy",
        "source": str(src_dir.resolve()),
        "max_side": max_side,
        "count": len(samples),
    }
    if _marker_matches(dst_dir, config):
        return dst_dir

    building = _build_folder(dst_dir)

    def copy_one(sample: tuple[Path, int]) -> str | None:
        path, label = sample
        relative = path.relative_to(src_dir / class_names[label])
        target = building / class_names[label] / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            image = load_image_rgb(path)
        except ImageLoadError as error:
            return str(error)
        if min(image.size) <= max_side:
            shutil.copyfile(path, target)  # small enough: the original bytes
        else:
            image = image.resize(_resized_size(*image.size, max_side), Image.Resampling.BILINEAR)
            if target.suffix.lower() != ".png":
                target = target.with_name(target.name + ".png")  # photo.jpg -> photo.jpg.png, lossless
            image.save(target, format="PNG")
        return None

    try:
        for name in class_names:
            (building / name).mkdir()
        # Threads are enough: PIL decodes, resizes and encodes without holding the GIL.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            results = list(
                tqdm(pool.map(copy_one, samples), total=len(samples), desc=f"Resizing to {max_side} px")
            )
        skipped = [r for r in results if r is not None]
        if skipped:
            warnings.warn(
                f"Skipped {len(skipped)} undecodable file(s):\n  " + "\n  ".join(skipped[:20]), stacklevel=2
            )
        _write_marker(building, config)
        _publish(building, dst_dir, config)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return dst_dir


def get_dataset(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """For notebooks: the folder of dataset ``name``, made or downloaded into ``data/<name>`` if needed.

    ``"toy"`` -> :func:`make_toy_dataset` (seconds); ``"fake_or_real"`` -> :func:`download_fake_or_real`
    (~9 GB). Keyword arguments go to that function. Returns the folder holding fake_images/ and real_images/.
    """
    from helpers import course

    if name == "toy":
        root = Path(root) if root is not None else course.data_dir() / "toy"
        before, start = _read_marker(root), time.perf_counter()
        path = make_toy_dataset(root, **kwargs)
        if _read_marker(path) != before:  # made now, not reused
            print(f"Made the toy dataset in {path} ({time.perf_counter() - start:.1f} s).")
        return path
    if name == "fake_or_real":
        root = Path(root) if root is not None else course.data_dir() / "fake_or_real"
        if _read_marker(root) is None:
            print(
                f"Fetching the Fake or Real Competition dataset ({FAKE_OR_REAL_COUNT:,} images, train.zip "
                f"is about 9 GB, needs ~18 GB of disk while extracting) into {root} ..."
            )
        return download_fake_or_real(root, **kwargs)
    raise ValueError(f"Unknown dataset {name!r}; valid names are 'toy' and 'fake_or_real'.")


# --------------------------------------------------------------------------------------------------
# Looking at the data: samples and spectra
# --------------------------------------------------------------------------------------------------


def mean_log_spectrum(images: Iterable[Image.Image | np.ndarray]) -> np.ndarray:
    """Mean over images of log(1 + |2-D FFT|) of the grey image, zero frequency in the centre: (H, W).

    Upsampling fingerprints show up as bright peaks at the edges and corners (the Nyquist frequency,
    a pattern repeating every 2 pixels) and as missing energy at high frequencies (Durall et al. 2020).
    All images must have the same size.
    """
    total, count, shape = None, 0, None
    for image in images:
        pixels = np.asarray(image, dtype=np.float64)
        grey = pixels.mean(axis=2) if pixels.ndim == 3 else pixels  # (H, W)
        if shape is None:
            shape = grey.shape
        elif grey.shape != shape:
            raise ValueError(f"all images must have the same size, got {grey.shape} after {shape}")
        spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))))
        total = spectrum if total is None else total + spectrum
        count += 1
    if count == 0:
        raise ValueError("mean_log_spectrum needs at least one image")
    return total / count


def _images_of_class(root: Path, name: str, limit: int) -> list[Image.Image]:
    """The first ``limit`` images of class folder ``name``, decoded."""
    return [load_image_rgb(p) for p in _list_class_files(root / name)[:limit]]


def plot_samples(root: str | os.PathLike, path: str | os.PathLike | None = None, per_class: int = 8):
    """The first ``per_class`` images of each class, and the fakes' top-left 16x16 pixels enlarged.

    Fakes are labelled with the generator that made them when ``root/manifest.csv`` (toy set) exists.
    Saved to ``path`` if given; returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    root = Path(root)
    generators = {}
    if (root / "manifest.csv").is_file():
        rows = (
            line.split(",") for line in (root / "manifest.csv").read_text(encoding="utf-8").splitlines()[1:]
        )
        generators = {file: generator for file, _, generator in rows}
    rows = [(name, _list_class_files(root / name)[:per_class]) for name in CLASS_NAMES]
    fig, axes = plt.subplots(3, per_class, figsize=(1.5 * per_class, 5.4), squeeze=False)
    for row, (name, files) in enumerate(rows):
        for col, file in enumerate(files):
            axes[row, col].imshow(load_image_rgb(file))
            label = generators.get(f"{name}/{file.name}", file.name)
            axes[row, col].set_xlabel("photo crop" if label == "none" else label, fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=10)
    for col, file in enumerate(rows[0][1]):
        axes[2, col].imshow(np.asarray(load_image_rgb(file))[:16, :16], interpolation="nearest")
    axes[2, 0].set_ylabel("fake, 16x16\nenlarged", fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{root.name}: real crops and fakes from stand-in generators (enlarged: the period-2 pattern)",
        fontsize=11,
    )
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_spectra(root: str | os.PathLike, path: str | os.PathLike | None = None, max_images: int = 500):
    """Mean log-magnitude spectrum of real and of fake images, and fake minus real; saved to ``path`` if given."""
    import matplotlib.pyplot as plt

    root = Path(root)
    fake = mean_log_spectrum(_images_of_class(root, "fake_images", max_images))
    real = mean_log_spectrum(_images_of_class(root, "real_images", max_images))
    height, width = real.shape
    # fftshift puts frequency -N/2 at index 0; origin='lower' draws positive frequencies up and right
    extent = (-width // 2 - 0.5, width - width // 2 - 0.5, -height // 2 - 0.5, height - height // 2 - 0.5)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    vmin, vmax = min(real.min(), fake.min()), max(real.max(), fake.max())
    for ax, spectrum, title in ((axes[0], real, "real_images"), (axes[1], fake, "fake_images")):
        shown = ax.imshow(spectrum, cmap="magma", vmin=vmin, vmax=vmax, extent=extent, origin="lower")
        ax.set_title(f"{title}: mean log(1 + |FFT|)")
        fig.colorbar(shown, ax=ax, fraction=0.046, label="log magnitude")
    difference = fake - real
    limit = np.abs(difference).max()
    shown = axes[2].imshow(
        difference, cmap="coolwarm", vmin=-limit, vmax=limit, extent=extent, origin="lower"
    )
    axes[2].set_title("fake minus real")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, label="difference of log magnitude")
    for fx, fy in ((-(width // 2), 0), (0, -(height // 2)), (-(width // 2), -(height // 2))):  # Nyquist
        axes[2].add_patch(plt.Circle((fx, fy), radius=width / 16, fill=False, color="black", linewidth=1.5))
    axes[2].annotate(
        "period-2 peaks\n(Nyquist frequency)", xy=(-(width // 2) + width / 16, 0), xytext=(-width / 4, height / 5),
        arrowprops={"arrowstyle": "->"}, fontsize=9,
    )  # fmt: skip
    for ax in axes:
        ax.set_xlabel("horizontal frequency (cycles per image)")
        ax.set_ylabel("vertical frequency (cycles per image)")
    fig.suptitle(
        f"Mean spectra of {root.name}: fakes lose fine detail and gain peaks at the Nyquist frequency",
        fontsize=11,
    )
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from helpers import course

    parser = argparse.ArgumentParser(prog="python -m helpers.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    toy = commands.add_parser("make-toy", help="write the toy dataset (seconds)")
    toy.add_argument("--out", type=Path, default=None, help="folder to write (default: data/toy)")
    toy.add_argument("--images-per-class", type=int, default=TOY_IMAGES_PER_CLASS)
    toy.add_argument("--image-size", type=int, default=64)
    toy.add_argument("--seed", type=int, default=0)
    download = commands.add_parser("download", help="download and extract the Fake or Real dataset (~9 GB)")
    download.add_argument(
        "--out", type=Path, default=None, help="folder to write (default: data/fake_or_real)"
    )
    download.add_argument(
        "--max-side", type=int, default=None, help="also write a copy with shorter sides <= N px"
    )
    figures = commands.add_parser("figures", help="draw sample and spectrum figures of an image folder")
    figures.add_argument("--data", type=Path, default=None, help="image folder (default: data/toy)")
    figures.add_argument("--out", type=Path, default=None, help="figures folder (default: figures/)")
    args = parser.parse_args(argv)

    if args.command == "make-toy":
        out = args.out or course.data_dir() / "toy"
        start = time.perf_counter()
        make_toy_dataset(
            out, images_per_class=args.images_per_class, image_size=args.image_size, seed=args.seed
        )
        print(f"{out}: {2 * args.images_per_class} images ready in {time.perf_counter() - start:.1f} s")
    elif args.command == "download":
        out = args.out or course.data_dir() / "fake_or_real"
        try:
            data = download_fake_or_real(out, max_side=args.max_side)
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{data}: {_count_images(data)} images ready")
    else:
        import matplotlib

        matplotlib.use("Agg")
        data = args.data or course.data_dir() / "toy"
        out = args.out or course.figures_dir()
        out.mkdir(parents=True, exist_ok=True)
        plot_samples(data, out / "toy_samples.png")
        plot_spectra(data, out / "toy_spectra.png")
        print(f"wrote {out / 'toy_samples.png'} and {out / 'toy_spectra.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
