"""Small mode versus full mode, and where the course reads and writes files.

Every notebook starts with a papermill ``parameters`` cell that sets ``MODE = "auto"`` and
leaves sizes as ``None``. The cell after it calls :func:`resolve_mode` and :func:`choose`:

- ``"full"``: the paper's sizes, the real dataset and pretrained weights. Picked by default on a GPU.
- ``"small"``: tiny sizes and the built-in toy dataset, runs on a CPU in minutes. Picked by
  default without a GPU.

``papermill -p MODE small`` (or ``full``), or the environment variable ``FAKEVIT_MODE``,
overrides the automatic choice.

Files live in one folder, the course *home* (:func:`home`): datasets in ``data/``, figures in
``figures/``, the fine-tuned detector in ``build/detector/``, laid out as in a checkout. In Colab,
:func:`setup_colab` makes a folder on Google Drive the home, so that what lesson 04 trains is still
there when lesson 05 opens in a new runtime, or next week.

A check on a *result* (an accuracy, a margin) uses :func:`expect`: in small mode, where CI proves the
result, a miss stops the notebook; in full mode, where no test has run these exact numbers, a miss is
a loud warning and *Run all* goes on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TypeVar

import torch

MODE_ENV = "FAKEVIT_MODE"
FIGURES_ENV = "FAKEVIT_FIGURES"
HOME_ENV = "FAKEVIT_HOME"
MODES = ("small", "full")
DRIVE_MOUNT = Path("/content/drive")  # where Colab mounts Google Drive
DRIVE_HOME = DRIVE_MOUNT / "MyDrive" / "fake-vit"  # the course home on Drive, "My Drive/fake-vit"

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
                "A lesson that would load ImageNet weights that are not on this machine says so.\n"
                'For the real thing, run on a GPU (full mode) or set MODE = "full".\n' + "=" * 72
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


def home() -> Path:
    """The course home, where every file the lessons make goes: ``$FAKEVIT_HOME`` when set, else the
    checkout around the working directory, else the working directory itself.

    In Colab, :func:`setup_colab` sets ``$FAKEVIT_HOME`` to a folder on Google Drive. Every lesson.
    """
    chosen = os.environ.get(HOME_ENV, "").strip()
    return Path(chosen).expanduser().resolve() if chosen else project_root()


def figures_dir() -> Path:
    """Where notebooks save their figures: ``home()/figures``, or ``$FAKEVIT_FIGURES`` when set.

    Every lesson that draws a figure.
    """
    folder = Path(os.environ.get(FIGURES_ENV) or home() / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_dir() -> Path:
    """Where datasets are generated or downloaded: ``home()/data``.

    Lessons 03 to 06, through helpers.data.sources.get_dataset.
    """
    return home() / "data"


def detector_dir() -> Path:
    """Where the fine-tuning lesson (04) saves the detector that lessons 05 and 06 and the demo load:
    ``home()/build/detector``."""
    return home() / "build" / "detector"


def setup_colab(use_drive: bool = True) -> Path:
    """In Colab, make Google Drive's ``My Drive/fake-vit`` the course home; return the home.

    With ``use_drive`` (the ``USE_DRIVE`` parameter of every lesson), Colab asks once per runtime for
    permission to mount Drive; the dataset, its prepared copy and the detector then outlive the
    runtime, so lesson 05 finds what lesson 04 made. Without Drive, or when mounting fails, files go to
    the runtime's disk and are lost when it ends (said loudly). Outside Colab, and when
    ``$FAKEVIT_HOME`` is already set, nothing changes. Every lesson's first code cell.
    """
    if not in_colab():
        return home()
    if os.environ.get(HOME_ENV, "").strip():  # chosen by you, or by this function in an earlier cell
        print(f"Course home: {home()} (from ${HOME_ENV}).")
        return home()
    if use_drive:
        from google.colab import drive  # only exists inside Colab

        try:
            drive.mount(str(DRIVE_MOUNT))
        except Exception as error:  # refused permission, timeout: the lesson still runs, without Drive
            announce(
                f"Google Drive could not be mounted ({type(error).__name__}: {error}).\n"
                f"Files go to {home()} and are LOST when this runtime ends.\n"
                "To keep them, run this cell again and allow access; to stop asking, set USE_DRIVE = False."
            )
            return home()
        DRIVE_HOME.mkdir(parents=True, exist_ok=True)
        os.environ[HOME_ENV] = str(DRIVE_HOME)  # also for the processes a lesson starts (CLI, demo)
        print(f"Course home on Google Drive: {DRIVE_HOME} (data, figures and the detector persist).")
        return home()
    print(f"USE_DRIVE is False: files go to {home()} and are lost when this Colab runtime ends.")
    return home()


def announce(message: str) -> None:
    """Print ``message`` between two rows of ``!`` so it stands out in a notebook's output.

    What the course says loudly: random or stand-in weights, Drive not mounted, a result not met.
    """
    print("!" * 80 + "\n" + message + "\n" + "!" * 80, flush=True)


_warned: set[str] = set()  # messages expect() has already printed in this process


def expect(condition: bool, message: str, *, mode: str) -> bool:
    """Check a result the lesson claims; return ``bool(condition)``.

    Small mode: ``AssertionError(message)`` when the condition is false, as a plain ``assert`` would
    (CI runs small mode, so there the claim is proven). Full mode: a loud printed warning (once per
    message) and the notebook goes on, because no test has run this exact result on a GPU with the
    real data, and a miss should not stop *Run all* after twenty minutes. Use plain ``assert`` for
    facts that hold in any mode (shapes, two computations agreeing). Lessons 03 to 06.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'small' or 'full', got {mode!r}; call resolve_mode first")
    if condition:
        return True
    if mode == "small":
        raise AssertionError(message)
    if message not in _warned:
        _warned.add(message)
        announce(
            f"NOT AS EXPECTED (full mode): {message}\n"
            "The lesson goes on; its text describes what was expected. Your numbers differ: a shorter run, "
            "other data, or another GPU can do that. Look at the figures and metrics above."
        )
    return False


def pick_device() -> torch.device:
    """The GPU if there is one, else the CPU. Lessons 03 to 06."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
