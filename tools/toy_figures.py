"""Draw the toy data's two README figures: sample images, and the mean spectra of real and fake ones.

    python tools/toy_figures.py --data data/toy --out figures

writes toy_samples.png and toy_spectra.png (``make figures`` runs it); the spectra show the period-2
fingerprint of the toy fakes. No lesson uses them; data/README.md says how to make the toy set first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helpers import _cli as cli
from helpers import course
from helpers.data.datasets import CLASS_NAMES
from helpers.data.images import list_image_files, load_image_rgb
from helpers.data.toy import mean_log_spectrum


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


def main(argv: Sequence[str] | None = None) -> int:
    """Draw both figures of ``--data`` into ``--out``; returns the exit status."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="image folder (default: data/toy)")
    parser.add_argument("--out", type=Path, default=None, help="figures folder (default: figures/)")
    args = parser.parse_args(argv)
    if args.data is not None and not args.data.is_dir():
        parser.error(
            f"--data {args.data}: no such folder; make the toy set with `python -m helpers.data make-toy`"
        )

    def draw() -> int:
        import matplotlib

        matplotlib.use("Agg")
        data, out = args.data or course.data_dir() / "toy", args.out or course.figures_dir()
        out.mkdir(parents=True, exist_ok=True)
        plot_samples(data, out / "toy_samples.png")
        plot_spectra(data, out / "toy_spectra.png")
        print(f"wrote {out / 'toy_samples.png'} and {out / 'toy_spectra.png'}")
        return 0

    return cli.run(draw, expected=(ValueError,))  # ValueError: a folder without the two classes of images


if __name__ == "__main__":
    raise SystemExit(main())
