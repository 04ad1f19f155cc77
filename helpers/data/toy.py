"""The toy fake-versus-real dataset (small mode, tests; lesson 03, ``data/README.md``): real images are crops
of scikit-image's photographs; fakes are halved and upsampled by a transposed convolution, whose
"checkerboard" fingerprint (Odena et al. 2016; Durall et al. 2020) is all that tells the classes apart."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from helpers._files import building_folder, marker_matches, read_marker
from helpers.data.cache import build_image_cache
from helpers.data.datasets import CLASS_NAMES
from helpers.data.images import load_image_rgb

IMAGES_PER_CLASS = 500  # default size: ~3 s to generate, tiny ViT >= 90 % in 1-2 CPU minutes
VERSION = 2  # bump when the recipe below changes, so that old folders are regenerated

# Stand-in generators: a 2x2 average, then a stride-2 transposed convolution with this separable 1-D kernel.
# Even and odd outputs collect different taps; unequal sums leave a period-2 checkerboard (Nyquist peak).
GENERATORS = {
    "deconv_4tap": (0.3, 1.0, 0.6, 0.1),  # even outputs: taps 1 + 3 = 1.1, odd outputs: 0 + 2 = 0.9
    "deconv_3tap": (0.45, 1.0, 0.45),  # even outputs: 1.0, odd outputs: 0.45 + 0.45 = 0.9
    "deconv_5tap": (0.05, 0.45, 0.85, 0.45, 0.1),  # wide and smooth, still 1.0 versus 0.9
}

# Lesson 04: does a detector spot a generator it never saw? The same fingerprint, 5x fainter (1.0 vs 0.98).
UNSEEN_GENERATORS = {"deconv_faint": (0.49, 1.0, 0.49)}

# Photographs inside the scikit-image package (``skimage/data/``): nothing is downloaded.
SOURCE_FILES = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "ihc.png", "hubble_deep_field.jpg",
    "retina.jpg", "motorcycle_left.png", "camera.png", "coins.png", "moon.png", "grass.png",
    "gravel.png", "brick.png",
)  # fmt: skip

# ``container_shortcut=True`` (lesson 05) plants the real data's shortcut: real JPEGs with EXIF, fake PNGs.
SHORTCUT_JPEG_QUALITY = 80
SHORTCUT_EXIF_MAKE = "FaKe-ViT toy camera"


def _sources() -> list[np.ndarray]:
    """The photographs bundled inside scikit-image, as (H, W, 3) uint8 arrays."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    found = [folder / name for name in SOURCE_FILES if (folder / name).is_file()]
    if len(found) < 4:
        raise RuntimeError(
            f"only {len(found)} of the photographs {SOURCE_FILES} found in {folder}; "
            "reinstall scikit-image (pip install --force-reinstall scikit-image)"
        )
    return [np.asarray(load_image_rgb(path)) for path in found]


def _random_crop(rng: np.random.Generator, sources: list[np.ndarray], size: int) -> np.ndarray:
    """A textured square crop, random scale, position, rotation and flip: (size, size, 3) in [0, 1]."""
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
    """Double height and width by a stride-2 transposed convolution with a separable 1-D kernel: input
    pixel i adds ``kernel[j] * low[i]`` to output ``2 i + j - (len(kernel) - 1) // 2``; edges repeated."""
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


def phase_gains(kernel: Sequence[float]) -> tuple[float, float]:
    """The sums of ``kernel``'s taps reaching even and odd outputs: the further apart, the stronger the
    checkerboard (lesson 04)."""
    offset = (len(kernel) - 1) // 2  # output pixel 2 i + j - offset gets tap j
    even = sum(w for j, w in enumerate(kernel) if (j - offset) % 2 == 0)
    odd = sum(w for j, w in enumerate(kernel) if (j - offset) % 2 == 1)
    return float(even), float(odd)


def _kernel(generator: str) -> tuple[float, ...]:
    """The 1-D kernel of a generator of :data:`GENERATORS` or :data:`UNSEEN_GENERATORS`."""
    kernels = {**GENERATORS, **UNSEEN_GENERATORS}
    if generator not in kernels:
        raise ValueError(f"unknown generator {generator!r}; the generators are {sorted(kernels)}")
    return kernels[generator]


def _generate_fake(real_like: np.ndarray, generator: str) -> np.ndarray:
    """A crop through a stand-in generator, with the crop's per-channel mean and std."""
    height, width, channels = real_like.shape
    low = real_like.reshape(height // 2, 2, width // 2, 2, channels).mean(axis=(1, 3))  # (H/2, W/2, 3)
    fake = _transposed_conv_upsample(low, _kernel(generator))  # (H, W, 3)
    mean, std = real_like.mean(axis=(0, 1)), real_like.std(axis=(0, 1))
    fake_mean, fake_std = fake.mean(axis=(0, 1)), fake.std(axis=(0, 1))
    return (fake - fake_mean) / np.maximum(fake_std, 1e-6) * std + mean


def _check_size(image_size: int) -> None:
    if image_size % 2 or image_size < 8:
        raise ValueError(f"image_size must be even and >= 8 (the generator halves it), got {image_size}")


def _toy_image(sources: list[np.ndarray], stream: list[int], size: int, generator: str) -> np.ndarray:
    """One uint8 (size, size, 3) crop, through ``generator`` unless "none"; its own random stream."""
    crop = _random_crop(np.random.default_rng(stream), sources, size)
    if generator != "none":
        crop = _generate_fake(crop, generator)
    return np.clip(np.round(crop * 255.0), 0, 255).astype(np.uint8)


def make_toy_dataset(
    root: str | os.PathLike, images_per_class: int = IMAGES_PER_CLASS, image_size: int = 64, seed: int = 0,
    container_shortcut: bool = False, generators: Sequence[str] | None = None,
) -> Path:  # fmt: skip
    """Write the toy dataset to ``root`` (ImageFolder PNGs, ``manifest.csv``: label, generator; the image
    cache of :mod:`helpers.data.cache`); fakes cycle through ``generators`` (default :data:`GENERATORS`).
    ``container_shortcut``: real images as JPEG with EXIF (lesson 05). Images byte-identical for the same
    arguments; reused if finished. Lesson 03."""
    root = Path(root)
    _check_size(image_size)
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    settings = {"dataset": "toy", "version": VERSION, "images_per_class": images_per_class}
    settings |= {"image_size": image_size, "seed": seed}
    if container_shortcut:  # only then: the default folder's marker stays as it was
        settings["container_shortcut"] = SHORTCUT_JPEG_QUALITY
    if generators is not None:
        for name in generators:
            _kernel(name)  # an unknown name raises ValueError
        settings["generators"] = list(generators)
    if marker_matches(root, settings):
        return root
    if root.exists() and any(root.iterdir()) and (read_marker(root) or {}).get("dataset") != "toy":
        raise ValueError(
            f"{root} exists, is not empty and holds no toy dataset; pick another folder or delete it"
        )

    with building_folder(root, {**settings, "count": 2 * images_per_class}) as building:
        sources = _sources()
        generators = sorted(GENERATORS) if generators is None else list(generators)
        rows = ["file,label,generator"]
        for label, name in enumerate(CLASS_NAMES):
            (building / name).mkdir()
            for i in range(images_per_class):
                generator = generators[i % len(generators)] if name == "fake_images" else "none"
                pixels = _toy_image(sources, [seed, label, i], image_size, generator)
                filename = f"{name.split('_')[0]}_{i:05d}.png"
                image = Image.fromarray(pixels)
                if container_shortcut and name == "real_images":
                    filename = filename.replace(".png", ".jpg")
                    exif = Image.Exif()
                    exif[0x010F] = SHORTCUT_EXIF_MAKE  # the "Make" tag, as a camera writes it
                    image.save(building / name / filename, format="JPEG", quality=SHORTCUT_JPEG_QUALITY,
                               exif=exif.tobytes())  # fmt: skip
                else:  # no metadata: the same pixels always give the same bytes
                    image.save(building / name / filename, format="PNG", compress_level=6)
                rows.append(f"{name}/{filename},{label},{generator}")
        (building / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    build_image_cache(root, image_size, progress=False)  # decoded once: training reads uint8 pixels
    return root


def make_toy_images(
    generator: str, images_per_class: int, image_size: int = 64, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """In memory, fakes of one ``generator`` then as many real crops (``seed != 0``: not in the toy set):
    uint8 (N, S, S, 3) images, int64 (N,) labels (0 = fake). Lesson 04."""
    _kernel(generator)  # unknown name -> ValueError before any work
    _check_size(image_size)
    sources = _sources()
    images, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        for i in range(images_per_class):
            kind = generator if name == "fake_images" else "none"
            images.append(_toy_image(sources, [seed, label, i], image_size, kind))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


# The fingerprint, measured (tests and tools/toy_figures.py's README figure) ------------------------


def mean_log_spectrum(images: Iterable[Image.Image | np.ndarray], *, window: bool = False) -> np.ndarray:
    """Mean log(1 + |2-D FFT|) of same-sized grey images, centred, DC removed (H, W): upsampling peaks at the
    Nyquist frequency (Durall et al. 2020). ``window=True`` (Hann): no cross from the image edges."""
    total, count, shape, taper = None, 0, None, None
    for image in images:
        pixels = np.asarray(image, dtype=np.float64)
        grey = pixels.mean(axis=2) if pixels.ndim == 3 else pixels  # (H, W)
        if shape is None:
            shape = grey.shape
            taper = np.outer(*(np.hanning(n + 1)[:-1] for n in shape)) if window else np.ones(shape)
        elif grey.shape != shape:
            raise ValueError(f"all images must have the same size, got {grey.shape} after {shape}")
        centred = grey - (taper * grey).sum() / taper.sum()  # the (weighted) mean removed: DC = 0
        spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(taper * centred))))
        total = spectrum if total is None else total + spectrum
        count += 1
    if count == 0:
        raise ValueError("mean_log_spectrum needs at least one image")
    return total / count
