"""Files no reader sees half-written (a temporary name, then a rename; folders marked ``.complete``
last), a clear :class:`DiskSpaceError` for a full disk, and Google Drive spotted (slow for small files)."""

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
SCRATCH_ENV = "FAKEVIT_SCRATCH"  # overrides local_scratch_dir()
# /proc/mounts types that live across a network: Colab's Drive is "fuse.drive"; any FUSE, NFS, SMB.
NETWORK_FILESYSTEMS = ("fuse", "nfs", "cifs", "smb", "9p", "sshfs")
FREE_SOME = "Free some space, or set FAKEVIT_HOME to a folder on a bigger disk, and run this again."


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(temporary_path)``, then a rename to ``path``; on failure ``path`` is untouched, and a full
    disk is raised as ``OSError(ENOSPC)`` naming ``path``, whatever the writer raised."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:  # Ctrl-C too
        disk_full = isinstance(error, Exception) and _disk_is_full(error, path.parent)  # before the unlink
        temporary.unlink(missing_ok=True)
        if disk_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise
    return path


def _disk_is_full(error: Exception, folder: Path) -> bool:
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
    """True when ``folder`` is complete and its marker holds each of ``settings``."""
    marker = read_marker(folder)
    return marker is not None and all(marker.get(key) == value for key, value in settings.items())


@contextmanager
def building_folder(target: str | os.PathLike, marker: dict) -> Iterator[Path]:
    """A hidden folder beside ``target`` to fill; on success ``marker`` is written and it replaces
    ``target`` (a copy another process published first is kept)."""
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


class DiskSpaceError(RuntimeError):
    """Not enough free disk space for a write, or "No space left on device" during one."""


def size_text(size: float) -> str:
    """``size`` bytes for a person: "9.1 GB", or "12.3 MB" below 0.1 GB."""
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def existing_parent(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else its nearest existing parent folder."""
    path = Path(path).absolute()
    return next(p for p in (path, *path.parents) if p.exists())


def free_bytes(folder: str | os.PathLike) -> int:
    """Free space for this user on the disk that holds ``folder`` (or its nearest existing parent)."""
    return shutil.disk_usage(existing_parent(folder)).free


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` unless ``needed`` bytes fit on the disk that holds ``folder``."""
    free = free_bytes(folder)
    if needed > free:
        raise DiskSpaceError(
            f"{what} needs {size_text(needed)} of free disk space in {folder}, but only {size_text(free)} "
            f"is free there. {FREE_SOME}"
        )


def _disk_full_error(error: BaseException | None) -> OSError | None:
    seen = set()  # libraries such as huggingface_hub wrap the OSError: follow the chain of causes
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def explain_disk_full(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """ "No space left on device" (or a full quota) inside the block as a :class:`DiskSpaceError` saying
    what was being written where."""
    try:
        yield
    except Exception as error:
        full = _disk_full_error(error)
        if full is None:
            raise
        free = size_text(free_bytes(folder))
        raise DiskSpaceError(
            f"The disk filled up while {what} in {folder} ({full.strerror}); {free} is free now. {FREE_SOME}"
        ) from error


def _mount_types() -> dict[str, str]:
    """Mount point -> filesystem type, from /proc/mounts (device, mount point with \\040 for spaces, type)."""
    try:
        lines = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:  # none on macOS
        return {}
    return {f[1].replace("\\040", " "): f[2] for f in map(str.split, lines) if len(f) >= 3}


def is_network_filesystem(path: str | os.PathLike) -> bool:
    """True when ``path`` is on a network or FUSE filesystem (Colab's Google Drive), by /proc/mounts."""
    path = Path(path).absolute()
    mounts = _mount_types()
    for folder in (path, *path.parents):
        if str(folder) in mounts:
            return mounts[str(folder)].lower().startswith(NETWORK_FILESYSTEMS)
    return False


def local_scratch_dir() -> Path:
    """This machine's disk, for data quick to remake: ``$FAKEVIT_SCRATCH``, else ``<temp dir>/fakevit``."""
    return Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "fakevit")
