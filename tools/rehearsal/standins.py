"""Stand-ins for what full mode downloads: the dataset's ``train.zip`` and ImageNet ViT-B/16 weights.

- :func:`write_standin_zip`: a zip with the layout of the real ``train.zip``
  (``mncai/Fake_or_Real_Competition_Dataset``) as a macOS "Compress" makes it::

      train/                                   directory entries
      train/fake_images/fake_0000.png          ~512-px PNG "fakes" (the toy set's upsampling fingerprint)
      __MACOSX/train/fake_images/._fake_0000.png   AppleDouble metadata, one per file (junk)
      train/real_images/real_0000.jpg          multi-megapixel JPEG "photos", one of them rotated by EXIF
      __MACOSX/train/real_images/._real_0000.jpg

  A few dozen images instead of 6,750; the same arguments always give the same bytes.
- :func:`write_standin_cnn_weights`: the same for the ImageNet ResNet that lesson 04 fine-tunes beside
  the ViT (``resnet50-11ad3fa6.pth``).
- :func:`write_standin_vit_b16_weights`: a randomly initialised torchvision ``vit_b_16`` state dict
  saved where torchvision's weights API looks first (``$TORCH_HOME/hub/checkpoints/vit_b_16-c867db91.pth``).
  Its sha256 does not start with ``c867db91``, the prefix torchvision put in the published file's name,
  which is how ``helpers.model.pretrained.check_published_weights`` tells them from the published ones.

Command line (stand-ins for the rehearsal, or for trying full mode by hand)::

    python -m tools.rehearsal.standins --hub-root DIR [--torch-home DIR] [--fakes N --photos N]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import struct
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

# The toy set's recipe, imported rather than copied: helpers.data.toy makes the toy set's "fakes" with these.
from helpers.data.datasets import CLASS_NAMES
from helpers.data.fake_or_real import REPO_ID, ZIP_FILE
from helpers.data.toy import GENERATORS, _generate_fake, _random_crop
from helpers.data.toy import _sources as _toy_sources
from helpers.model.pretrained import sha256_prefix

PHOTO_SIZES = ((2000, 1500), (1500, 2000), (2048, 1536))  # (width, height): 3.0, 3.0 and 3.1 megapixels
FAKE_SIZE = 512  # side of the square PNG "fakes"
EXIF_ROTATED_PHOTO = 2  # this photo is stored landscape with EXIF Orientation 6 (shown as portrait)
ZIP_DATE = (2023, 6, 1, 12, 0, 0)  # every member's timestamp: fixed, so the zip's bytes are reproducible
VIT_B16_WEIGHTS = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1
PUBLISHED_PREFIX = Path(VIT_B16_WEIGHTS.url).stem.rsplit("-", 1)[1]  # "c867db91": sha256 prefix in the name
# The ImageNet CNNs lesson 04 may fine-tune beside the ViT (its CNN parameter), with the weights it asks for.
CNN_WEIGHTS = {
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
}


@functools.cache
def _sources() -> tuple[np.ndarray, ...]:
    """scikit-image's bundled photographs as (H, W, 3) uint8 arrays, decoded once."""
    return tuple(_toy_sources())


def standin_fake(index: int, seed: int = 0) -> np.ndarray:
    """A (512, 512, 3) uint8 "fake": a photo crop passed through one of the toy set's stand-in generators."""
    rng = np.random.default_rng([seed, 0, index])
    crop = _random_crop(rng, list(_sources()), FAKE_SIZE)  # (512, 512, 3) floats in [0, 1]
    generator = sorted(GENERATORS)[index % len(GENERATORS)]
    return np.clip(np.round(_generate_fake(crop, generator) * 255.0), 0, 255).astype(np.uint8)


def standin_photo(index: int, seed: int = 0) -> bytes:
    """JPEG bytes of a multi-megapixel "photo": a scikit-image photograph cropped, enlarged, with noise."""
    rng = np.random.default_rng([seed, 1, index])
    colour = [s for s in _sources() if np.ptp(s.astype(np.int16).mean(axis=(0, 1))) > 0]  # not grey
    source = colour[index % len(colour)]
    width, height = PHOTO_SIZES[index % len(PHOTO_SIZES)]
    # The largest crop of the source with the photo's aspect ratio, at 70-100 % of that size, anywhere.
    scale = min(source.shape[1] / width, source.shape[0] / height) * rng.uniform(0.7, 1.0)
    crop_w, crop_h = int(width * scale), int(height * scale)
    left = int(rng.integers(source.shape[1] - crop_w + 1))
    top = int(rng.integers(source.shape[0] - crop_h + 1))
    image = Image.fromarray(source[top : top + crop_h, left : left + crop_w])
    pixels = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    pixels = pixels + rng.integers(-4, 5, size=pixels.shape, dtype=np.int16)  # (H, W, 3)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    if index == EXIF_ROTATED_PHOTO:
        # Stored sideways, as a phone held upright stores it: EXIF Orientation 6 = turn 90 degrees clockwise.
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def apple_double(name: str) -> bytes:
    """The AppleDouble ``._name`` that macOS adds to a zip for ``name``: a header, 32 bytes of Finder info."""
    header = struct.pack(
        ">II16sH", 0x00051607, 0x00020000, b"Mac OS X        ", 1
    )  # magic, version, filler, entries
    finder_info = struct.pack(">III", 9, len(header) + 12, 32) + b"\0" * 32  # entry 9 = Finder info
    return header + finder_info


def _member(name: str, is_dir: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.create_system = 3  # Unix, as on macOS
    info.external_attr = ((0o40755 << 16) | 0x10) if is_dir else (0o100644 << 16)
    info.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    return info


def standin_fake_png(index: int, seed: int = 0) -> bytes:
    """PNG bytes of :func:`standin_fake`."""
    buffer = io.BytesIO()
    Image.fromarray(standin_fake(index, seed)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_standin_zip(
    path: str | os.PathLike, fakes: int = 16, photos: int = 16, seed: int = 0, workers: int = 1
) -> Path:
    """Write a stand-in ``train.zip`` with ``fakes`` PNGs and ``photos`` JPEGs (see the module docstring).

    ``workers`` processes make the images (a few hundred take a while alone). The same arguments give a
    byte-identical file, whatever ``workers`` is. Returns ``path``.
    """
    if fakes < 1 or photos < 1:
        raise ValueError(f"need at least one image per class, got fakes={fakes}, photos={photos}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fake_dir, real_dir = (f"train/{name}" for name in CLASS_NAMES)  # fake_images, real_images
    _sources()  # decoded once here, so that forked workers inherit them
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        make = pool.map if pool is not None else map
        fake_bytes = make(standin_fake_png, range(fakes), [seed] * fakes)
        photo_bytes = make(standin_photo, range(photos), [seed] * photos)
        files = [(f"{fake_dir}/fake_{i:04d}.png", data) for i, data in enumerate(fake_bytes)]
        files += [(f"{real_dir}/real_{i:04d}.jpg", data) for i, data in enumerate(photo_bytes)]

    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for folder in ("train/", f"{fake_dir}/", f"{real_dir}/"):
            archive.writestr(_member(folder, is_dir=True), b"")
        for name, payload in files:
            archive.writestr(_member(name), payload, compresslevel=1)
            folder, _, filename = name.rpartition("/")
            archive.writestr(
                _member(f"__MACOSX/{folder}/._{filename}"), apple_double(filename), compresslevel=1
            )
    os.replace(partial, path)
    return path


def publish_standin_dataset(hub_root: str | os.PathLike, **zip_kwargs) -> Path:
    """Write the stand-in zip where :class:`~rehearsal.fake_hub.FakeHub` serves it as the dataset file."""
    return write_standin_zip(Path(hub_root) / REPO_ID / ZIP_FILE, **zip_kwargs)


def write_standin_vit_b16_weights(torch_home: str | os.PathLike, seed: int = 0) -> Path:
    """Save random ViT-B/16 weights as ``torch_home/hub/checkpoints/vit_b_16-c867db91.pth`` (plain tensors).

    torchvision initialises the classification head to zero; here it gets small random values instead,
    as trained weights have, so the 1000 logits differ from each other. Returns the file's path.
    """
    target = Path(torch_home) / "hub" / "checkpoints" / Path(VIT_B16_WEIGHTS.url).name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = torchvision.models.vit_b_16()  # random weights, torchvision's initialisation
    with torch.no_grad():
        model.heads.head.weight.normal_(std=0.02)  # (1000, 768)
    partial = target.with_name(target.name + ".partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, target)
    return target


def write_standin_cnn_weights(torch_home: str | os.PathLike, name: str = "resnet50", seed: int = 0) -> Path:
    """Save random weights of torchvision's ImageNet CNN ``name`` (lesson 04 fine-tunes it beside the
    ViT) under the published file name in ``torch_home/hub/checkpoints`` (``resnet50-11ad3fa6.pth``
    for ``IMAGENET1K_V2``), as :func:`write_standin_vit_b16_weights` does for the ViT. Returns the path.
    """
    weights = CNN_WEIGHTS[name]
    target = Path(torch_home) / "hub" / "checkpoints" / Path(weights.url).name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name)  # random weights, torchvision's initialisation
    partial = target.with_name(target.name + ".partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.rehearsal.standins", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--hub-root", type=Path, required=True, help="folder that FakeHub serves (--root)")
    parser.add_argument(
        "--torch-home", type=Path, default=None, help="also write stand-in ViT-B/16 weights here"
    )
    parser.add_argument("--fakes", type=int, default=16, help="PNG fakes in the zip")
    parser.add_argument("--photos", type=int, default=16, help="JPEG photos in the zip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    zip_path = publish_standin_dataset(args.hub_root, fakes=args.fakes, photos=args.photos, seed=args.seed)
    print(f"{zip_path}: {args.fakes} fakes + {args.photos} photos, {zip_path.stat().st_size / 1e6:.1f} MB")
    if args.torch_home is not None:
        weights = write_standin_vit_b16_weights(args.torch_home, seed=args.seed)
        cnn = write_standin_cnn_weights(args.torch_home, seed=args.seed)
        print(f"{cnn}: random ResNet-50, sha256 {sha256_prefix(cnn)}...")
        print(
            f"{weights}: random ViT-B/16, sha256 {sha256_prefix(weights)}..., published {PUBLISHED_PREFIX}..."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
