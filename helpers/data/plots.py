"""Sample grids and mean Fourier spectra of real and fake images (lessons 03 and 05,
``python -m helpers.data figures``): the spectra show the toy fakes' fingerprint."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.data.datasets import CLASS_NAMES
from helpers.data.images import list_image_files, load_image_rgb


def mean_log_spectrum(images: Iterable[Image.Image | np.ndarray], *, window: bool = False) -> np.ndarray:
    """Mean over same-sized images of log(1 + |2-D FFT|) of the grey image, centred, DC removed: (H, W).
    Upsampling shows as peaks at the Nyquist frequency (Durall et al. 2020); ``window=True`` (Hann) removes
    the cross the jump between opposite edges draws. Lesson 05."""
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


def nyquist_peak(spectrum: np.ndarray) -> float:
    """How much a period-2 pattern stands out in a :func:`mean_log_spectrum` (log units, ~0 without): the
    Nyquist row and column minus those two steps inside. Lesson 05."""
    border = np.r_[spectrum[0, 1:], spectrum[1:, 0]].mean()
    inside = np.r_[spectrum[2, 2:], spectrum[2:, 2]].mean()
    return float(border - inside)


def _finish(fig, title: str, path: str | os.PathLike | None):
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_samples(root: str | os.PathLike, path: str | os.PathLike | None = None, per_class: int = 8):
    """The first ``per_class`` images of each class (labelled from a toy set's ``manifest.csv``), and the
    fakes' top-left 16x16 enlarged; saved to ``path``."""
    import matplotlib.pyplot as plt

    root = Path(root)
    generators = {}
    if (root / "manifest.csv").is_file():
        lines = (root / "manifest.csv").read_text(encoding="utf-8").splitlines()[1:]
        generators = {file: generator for file, _, generator in (line.split(",") for line in lines)}
    rows = [(name, list_image_files(root / name)[:per_class]) for name in CLASS_NAMES]
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
    title = f"{root.name}: real crops and fakes from stand-in generators (enlarged: the period-2 pattern)"
    return _finish(fig, title, path)


def plot_spectra(root: str | os.PathLike, path: str | os.PathLike | None = None, max_images: int = 500):
    """Mean log-magnitude spectrum of real and of fake images, and fake minus real; saved to ``path``."""
    import matplotlib.pyplot as plt

    root = Path(root)
    fake, real = (
        mean_log_spectrum(load_image_rgb(p) for p in list_image_files(root / name)[:max_images])
        for name in CLASS_NAMES
    )
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
    peaks, at = "period-2 peaks\n(Nyquist frequency)", (-(width // 2) + width / 16, 0)
    axes[2].annotate(
        peaks, xy=at, xytext=(-width / 4, height / 5), arrowprops={"arrowstyle": "->"}, fontsize=9
    )
    for ax in axes:
        ax.set_xlabel("horizontal frequency (cycles per image)")
        ax.set_ylabel("vertical frequency (cycles per image)")
    title = f"Mean spectra of {root.name}: fakes lose fine detail and gain peaks at the Nyquist frequency"
    return _finish(fig, title, path)
