"""What ``tools/gpu_rehearsal.py`` measures while a lesson runs on a GPU, kept apart so tests can try it
without one: a cell appended to the runner's copy of a lesson that reports peak memory and the chosen
precision, a poller of ``nvidia-smi`` for the whole GPU's peak (it also covers a lesson that stops
early), and the slowest cells of an executed notebook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

REPORT_MARK = "GPU_REHEARSAL_REPORT="
# Appended after the lesson's last cell (in the runner's copy only); reads the lesson's own variables.
MEASURE_CELL = f"""\
# Appended by tools/gpu_rehearsal.py, not part of the lesson: what this run used.
import json as _json

import torch as _torch
from helpers.train import loop as _loop

_cuda = _torch.cuda.is_available()
_precision = globals().get("PRECISION")  # what the lesson trained with; "auto" is resolved as it would be
_resolve = getattr(_loop, "resolve_precision", None)
if _precision == "auto" and _resolve is not None:
    _precision = _resolve("auto", globals().get("DEVICE") or ("cuda" if _cuda else "cpu"))
print("{REPORT_MARK}" + _json.dumps({{
    "precision": None if _precision is None else str(_precision),
    "device": str(globals().get("DEVICE")),
    "gpu": _torch.cuda.get_device_name() if _cuda else None,
    "bf16_supported": _torch.cuda.is_bf16_supported() if _cuda else None,
    "max_memory_allocated_mib": _torch.cuda.max_memory_allocated() / 2**20 if _cuda else None,
    "max_memory_reserved_mib": _torch.cuda.max_memory_reserved() / 2**20 if _cuda else None,
    "torch": _torch.__version__,
}}))
"""


def with_measure_cell(notebook: Path, copy: Path) -> Path:
    """Write ``notebook`` to ``copy`` with :data:`MEASURE_CELL` appended as its last code cell."""
    content = json.loads(notebook.read_text(encoding="utf-8"))
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "gpu-rehearsal-measure",
        "metadata": {"tags": ["gpu-rehearsal"]},
        "outputs": [],
        "source": MEASURE_CELL,
    }
    content["cells"].append(cell)
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(json.dumps(content, indent=1), encoding="utf-8")
    return copy


def read_measurements(executed: Path) -> dict | None:
    """The dictionary the measure cell printed, or None when the lesson stopped before it."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None
    for cell in reversed(cells):
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", ""))
            if REPORT_MARK in text:
                return json.loads(text.split(REPORT_MARK, 1)[1].splitlines()[0])
    return None


def slowest_cells(executed: Path, count: int = 5) -> list[dict]:
    """The ``count`` cells that took longest (papermill records each cell's duration), slowest first,
    numbered as in the committed lesson (papermill's injected cells are not counted)."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return []
    timed, added = [], 0
    for index, cell in enumerate(cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            added += 1
            continue
        seconds = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.get("cell_type") == "code" and seconds is not None:
            line = next((s.strip() for s in "".join(cell["source"]).splitlines() if s.strip()), "")
            timed.append({"cell": index - added, "seconds": round(seconds, 2), "first_line": line[:80]})
    return sorted(timed, key=lambda c: -c["seconds"])[:count]


class GpuMemoryPoller:
    """Polls ``nvidia-smi`` for the memory used on the GPU, in a thread; :attr:`peak_mib` is the most
    seen (None without ``nvidia-smi``). Includes the CUDA context, which PyTorch's counters do not."""

    def __init__(self, interval: float = 0.5, command: str = "nvidia-smi"):
        self.interval = interval
        self.command = shutil.which(command)
        self.peak_mib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="gpu-memory")

    def _read(self) -> float | None:
        query = [self.command, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        try:
            done = subprocess.run(query, capture_output=True, text=True, timeout=10)
            return float(done.stdout.split()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def _poll(self) -> None:
        while not self._stop.is_set():
            used = self._read()
            if used is not None:
                self.peak_mib = used if self.peak_mib is None else max(self.peak_mib, used)
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuMemoryPoller:
        if self.command is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
