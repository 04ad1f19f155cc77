"""Small mode versus full mode, and where the course reads and writes files.

Every notebook starts with a papermill ``parameters`` cell that sets ``MODE = "auto"`` and
leaves sizes as ``None``. The cell after it calls :func:`resolve_mode` and :func:`choose`:

- ``"full"``: the paper's sizes, the real dataset and pretrained weights. Picked by default on a GPU.
- ``"small"``: tiny sizes and the built-in toy dataset, runs on a CPU in minutes. Picked by
  default without a GPU.

``papermill -p MODE small`` (or ``full``), or the environment variable ``FAKEVIT_MODE``,
overrides the automatic choice.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TypeVar

import torch

MODE_ENV = "FAKEVIT_MODE"
FIGURES_ENV = "FAKEVIT_FIGURES"
MODES = ("small", "full")

T = TypeVar("T")


def in_colab() -> bool:
    """True when running inside Google Colab. Lesson 06."""
    return "google.colab" in sys.modules


def resolve_mode(mode: str = "auto", *, verbose: bool = True) -> str:
    """Turn ``"auto"``, ``"small"`` or ``"full"`` into ``"small"`` or ``"full"``, and say which.

    An explicit ``mode`` wins; with ``"auto"`` the environment variable ``FAKEVIT_MODE`` wins;
    otherwise a visible CUDA GPU means full mode and no GPU means small mode. Every lesson's first cell.
    """
    requested = (mode or "auto").strip().lower()
    source = "the MODE parameter"
    if requested == "auto":
        env = os.environ.get(MODE_ENV, "").strip().lower()
        if env:
            requested, source = env, f"the environment variable {MODE_ENV}"
        else:
            requested = "full" if torch.cuda.is_available() else "small"
            source = "a GPU was found" if requested == "full" else "no GPU was found"
    if requested not in MODES:
        raise ValueError(f"mode must be 'auto', 'small' or 'full', got {requested!r} (from {source})")
    if verbose:
        if requested == "small":
            print(
                "=" * 72 + f"\nSMALL MODE ({source}): smaller sizes where a lesson trains, the toy dataset.\n"
                "Pretrained weights are used when they can be loaded; where they cannot, the\n"
                "model starts from RANDOM weights, and its numbers mean little. For the real thing,\n"
                'run on a GPU (full mode) or set MODE = "full".\n' + "=" * 72
            )
        else:
            print(f"FULL MODE ({source}): paper sizes, the real dataset and pretrained weights.")
    return requested


def choose(value: T | None, *, small: T, full: T, mode: str) -> T:
    """``value`` if it was set (not None), else the default for ``mode``. Every lesson's first cell."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'small' or 'full', got {mode!r}; call resolve_mode first")
    if value is not None:
        return value
    return small if mode == "small" else full


def project_root(start: Path | None = None) -> Path:
    """The course checkout that contains ``start`` (default: the working directory).

    Outside a checkout (for example in Colab, where the helpers are pip-installed) this is the
    working directory itself. Lessons 03, 05 and 06.
    """
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.fakevit]" in pyproject.read_text(encoding="utf-8"):
            return folder
    return start


def figures_dir() -> Path:
    """Where notebooks save their figures: ``figures/`` in the checkout, or ``$FAKEVIT_FIGURES``.

    Every lesson that draws a figure.
    """
    folder = Path(os.environ.get(FIGURES_ENV) or project_root() / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_dir() -> Path:
    """Where datasets are generated or downloaded: ``data/`` in the checkout.

    Lessons 03 to 06, through helpers.data.get_dataset.
    """
    return project_root() / "data"


def detector_dir() -> Path:
    """Where the fine-tuning lesson (04) saves the detector that lessons 05 and 06 and the demo load."""
    return project_root() / "build" / "detector"


def pick_device() -> torch.device:
    """The GPU if there is one, else the CPU. Lessons 03 to 06."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
