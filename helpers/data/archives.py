"""Zip files extracted safely, the whole listing checked before a file is written (full mode of lesson 03)."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from helpers._files import check_free_space, explain_disk_full, size_text


def is_junk(name: str) -> bool:
    """macOS's ``__MACOSX/`` copies and hidden files: in a zip, but not data."""
    parts = PurePosixPath(name).parts
    return "__MACOSX" in parts or any(part.startswith(".") for part in parts)


def plan_extraction(archive: zipfile.ZipFile, zip_path: Path, into: Path) -> list[zipfile.ZipInfo]:
    """The files to extract, junk left out; a RuntimeError names a member that would land outside ``into``
    (zip-slip, e.g. ``../evil.jpg``). A duplicate fails when written (never overwriting)."""
    inside = into.resolve()
    for info in archive.infolist():  # every member, junk included: none may point outside
        if not (inside / info.filename).resolve().is_relative_to(inside):
            raise RuntimeError(f"{zip_path}: member {info.filename!r} would be written outside {into}")
    return [m for m in archive.infolist() if not is_junk(m.filename) and not m.is_dir()]


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, open(target, "xb") as destination:  # "x": never overwrite
        shutil.copyfileobj(source, destination, length=1 << 20)


def extract_zip(
    zip_path: Path, into: Path, *, check_listing: Callable[[list[str]], None] | None = None
) -> None:
    """Extract ``zip_path`` into the new folder ``into`` once its listing (:func:`plan_extraction`,
    ``check_listing(names)``) and declared sizes pass; not a zip: a RuntimeError saying to download again."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = plan_extraction(archive, zip_path, into)
            if check_listing is not None:
                check_listing([m.filename for m in members])
            total = sum(m.file_size for m in members)  # declared sizes, the most zipfile will write
            check_free_space(into.parent, total, f"extracting {zip_path.name} ({size_text(total)} declared)")
            with explain_disk_full(into.parent, f"extracting {zip_path.name}"):
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"Extracting {zip_path.name}") as bar:
                    for info in members:
                        _extract_member(archive, info, into / info.filename)
                        bar.update(info.file_size)
    except zipfile.BadZipFile as error:
        raise RuntimeError(
            f"{zip_path} is not a valid zip file ({error}); it may be an incomplete download: "
            "delete it and run this again."
        ) from error
