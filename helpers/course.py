"""Small mode (tiny sizes, the toy data, a CPU) versus full mode (the paper's sizes, the real data, a GPU),
and the course *home* where files go (:func:`home`; in Colab on Google Drive, :func:`setup_colab`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import torch

MODE_ENV = "FAKEVIT_MODE"
FIGURES_ENV = "FAKEVIT_FIGURES"
HOME_ENV = "FAKEVIT_HOME"
MODES = ("small", "full")
DRIVE_MOUNT = Path("/content/drive")  # where Colab mounts Google Drive
DRIVE_HOME = DRIVE_MOUNT / "MyDrive" / "fake-vit"

T = TypeVar("T")


def in_colab() -> bool:
    """True when running inside Google Colab. Lesson 06."""
    return "google.colab" in sys.modules


def resolve_mode(mode: str = "auto", *, verbose: bool = True) -> str:
    """``"small"`` or ``"full"``, said aloud: ``mode`` unless "auto", else ``$FAKEVIT_MODE``, else full on a
    CUDA GPU. Every lesson's first cell; ``verbose`` also calls :func:`share_cpus`."""
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
    threads, cpus = share_cpus() if verbose else (0, 0)
    if verbose:
        if requested == "small":
            print(
                "=" * 72 + f"\nSMALL MODE ({source}): smaller sizes where a lesson trains, the toy dataset.\n"
                "A lesson that would load ImageNet weights that are not on this machine says so.\n"
                'For the real thing, run on a GPU (full mode) or set MODE = "full".\n' + "=" * 72
            )
        else:
            print(f"FULL MODE ({source}): paper sizes, the real dataset and pretrained weights.")
        if threads < cpus:
            print(f"Other programs keep the CPUs busy: PyTorch uses {threads} thread(s), one per idle CPU.")
    return requested


def busy_cpus(seconds: float = 0.5) -> float:
    """CPUs other processes keep busy now, from ``/proc/stat`` over ``seconds`` (else the load average)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all time, idle + iowait (in clock ticks)

    try:
        total, idle = sample()
        time.sleep(seconds)
        total2, idle2 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return (os.cpu_count() or 1) * (1 - (idle2 - idle) / max(1, total2 - total))


def free_cpus() -> tuple[int, int]:
    """(CPUs this process may use, how many of them are idle now, at least 1)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cpus, max(1, min(cpus, round(cpus - busy_cpus())))


def share_cpus() -> tuple[int, int]:
    """Give PyTorch one thread per idle CPU (a second training process otherwise slows both 7-14x); return
    (its threads, the CPUs). ``$OMP_NUM_THREADS``, if set, is left alone. Every lesson's first cell."""
    cpus, idle = free_cpus()
    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(idle)
    return torch.get_num_threads(), cpus


def choose(value: T | None, *, small: T, full: T, mode: str) -> T:
    """``value`` if it was set (not None), else the default for ``mode``. Every lesson's first cell."""
    _check_mode(mode)
    return value if value is not None else small if mode == "small" else full


def sizes(mode: str, *, small: dict[str, Any], full: dict[str, Any], overrides: dict[str, Any] | None = None):
    """A lesson's sizes as attributes (``S.EPOCHS``): ``small`` or ``full`` by ``mode``, updated by
    ``overrides``; an override that names no size raises. Lessons 03 to 06."""
    _check_mode(mode)
    if set(small) != set(full):
        raise ValueError(f"small and full presets name different sizes: {sorted(set(small) ^ set(full))}")
    if unknown := sorted(set(overrides or {}) - set(small)):
        raise ValueError(f"OVERRIDES names {unknown}, which are not sizes of this lesson: {sorted(small)}")
    return SimpleNamespace(**{**(small if mode == "small" else full), **(overrides or {})})


def project_root(start: Path | None = None) -> Path:
    """The course checkout containing ``start`` (default: the working directory), else ``start``.
    Lessons 03, 05 and 06."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.fakevit]" in pyproject.read_text(encoding="utf-8"):
            return folder
    return start


def home() -> Path:
    """Where the lessons' files go: ``$FAKEVIT_HOME``, else :func:`project_root`. Every lesson."""
    chosen = os.environ.get(HOME_ENV, "").strip()
    return Path(chosen).expanduser().resolve() if chosen else project_root()


def figures_dir() -> Path:
    """Where notebooks save their figures: ``$FAKEVIT_FIGURES``, else ``home()/figures``."""
    folder = Path(os.environ.get(FIGURES_ENV) or home() / "figures")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_dir() -> Path:
    """Where datasets are generated or downloaded: ``home()/data``. Lessons 03 to 06."""
    return home() / "data"


def detector_dir() -> Path:
    """``home()/build/detector``: lesson 04 saves its detector there; lessons 05, 06 and the demo load it."""
    return home() / "build" / "detector"


def setup_colab(use_drive: bool = True) -> Path:
    """In Colab, make Drive's ``My Drive/fake-vit`` the home (files outlive the runtime; a failed mount is
    said loudly); return the home. Outside Colab, or with ``$FAKEVIT_HOME`` set, nothing changes.
    Every lesson."""
    if not in_colab():
        return home()
    if os.environ.get(HOME_ENV, "").strip():  # chosen by you, or by this function in an earlier cell
        print(f"Course home: {home()} (from ${HOME_ENV}).")
    elif not use_drive:
        print(f"USE_DRIVE is False: files go to {home()} and are lost when this Colab runtime ends.")
    else:
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


def announce(message: str) -> None:
    """Print ``message`` between two rows of ``!`` so it stands out in a notebook's output."""
    print("!" * 80 + "\n" + message + "\n" + "!" * 80, flush=True)


_warned: set[str] = set()  # messages expect() has already printed in this process


def expect(condition: bool, message: str, *, mode: str) -> bool:
    """Check a claimed result: a miss raises ``AssertionError(message)`` in small mode (proven by CI),
    warns loudly once in full mode (never tested on these numbers). Lessons 03 to 06."""
    _check_mode(mode)
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


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be 'small' or 'full', got {mode!r}; call resolve_mode first")


def pick_device() -> torch.device:
    """The GPU if there is one, else the CPU. Lessons 03 to 06."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
