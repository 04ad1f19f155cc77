"""Writing files so that no reader ever sees half of one.

Two mechanisms, used everywhere the course writes something another program reads later:

- :func:`atomic_write`: write under a temporary name, then rename. A rename within one folder is
  atomic, so the file is either the old version or the complete new one, never half written.
  Used by the training state (lesson 03), the exported detector (lesson 04), the training CLI's
  ``metrics.json`` and the datasets' marker files.
- :func:`building_folder`: build a whole folder under a hidden name next to its final place, write
  a marker file (``.complete``) into it last, and publish it with one rename. Used by the toy set,
  the resized copy of the real set and its download (see ``helpers.data``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MARKER = ".complete"  # written last into a finished dataset folder, with the settings that made it


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``; return ``path``.

    If ``write`` fails, the temporary file is removed and ``path`` is left as it was. A failure on
    a full disk is raised as ``OSError(ENOSPC)`` naming ``path``, whatever the writer raised
    (safetensors and ``torch.save`` report it in errors of their own, without the errno).
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except Exception as error:
        disk_full = _disk_is_full(error, path.parent)  # before the partial file is removed
        temporary.unlink(missing_ok=True)
        if disk_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise
    except BaseException:  # Ctrl-C
        temporary.unlink(missing_ok=True)
        raise
    return path


def _disk_is_full(error: Exception, folder: Path) -> bool:
    """Whether ``error``, raised while writing into ``folder``, means that the disk is full."""
    if getattr(error, "errno", None) == errno.ENOSPC:  # Python's own file writes
        return True
    if os.strerror(errno.ENOSPC) in str(error):  # safetensors: "I/O error: No space left on device ..."
        return True
    try:  # torch.save says only "unexpected pos ...": look at the disk, which it filled to the last byte
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def write_json(path: str | os.PathLike, content: Any) -> Path:
    """``content`` as indented JSON in ``path``, written with :func:`atomic_write`."""
    text = json.dumps(content, indent=2) + "\n"
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The settings recorded in ``folder/.complete``, or None when the folder is not complete."""
    try:
        return json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_marker(folder: str | os.PathLike, info: dict) -> None:
    """Record ``info`` in ``folder/.complete``: the folder is finished."""
    write_json(Path(folder) / MARKER, info)


def marker_matches(folder: str | os.PathLike, settings: dict) -> bool:
    """True when ``folder`` is complete and was made with ``settings`` (its marker holds each of them)."""
    marker = read_marker(folder)
    return marker is not None and all(marker.get(key) == value for key, value in settings.items())


@contextmanager
def building_folder(target: str | os.PathLike, marker: dict) -> Iterator[Path]:
    """Yield a new hidden folder next to ``target`` to fill; when the block ends without an error,
    write ``marker`` into it and rename it to ``target`` (replacing an older version).

    ``target`` is therefore always either absent, the old version, or complete; an interrupted
    build leaves only a ``.NAME.partial-*`` folder, removed here or by the next attempt's clean-up.
    If another process published the same folder first, its copy is kept.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    building.chmod(0o755)  # mkdtemp makes it private (0o700); a dataset is readable like any folder
    try:
        yield building
        write_marker(building, marker)
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(building, target)
        except OSError:
            if not marker_matches(target, marker):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)  # already gone after a successful rename
