"""The real dataset (full mode): the Hub's "Fake or Real Competition" ``train.zip`` (~9 GB, 6,750 images),
extracted once and resized into the prepared copy lessons 03-06 use; on Drive kept as ONE uncompressed zip."""

from __future__ import annotations

import os
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from huggingface_hub import (
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    try_to_load_from_cache,
)
from tqdm.auto import tqdm

from helpers._files import (
    DiskSpaceError,
    building_folder,
    check_free_space,
    existing_parent,
    explain_disk_full,
    is_network_filesystem,
    local_scratch_dir,
    marker_matches,
    read_marker,
    size_text,
    write_marker,
)
from helpers.course import announce
from helpers.data.archives import extract_zip, is_junk
from helpers.data.cache import (
    CACHE_FOLDER,
    CacheWriter,
    build_image_cache,
    resize_for_cache,
    resize_shorter_side,
)
from helpers.data.datasets import CLASS_NAMES, find_images
from helpers.data.images import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    list_image_files,
    load_image_rgb,
    warn_skipped,
)
from helpers.data.index import vanished

REPO_ID = "mncai/Fake_or_Real_Competition_Dataset"
ZIP_FILE = "train.zip"
IMAGE_COUNT = 6750  # images in train.zip: fake_images + real_images
PAGE_URL = f"https://huggingface.co/datasets/{REPO_ID}"
ZIP_URL = f"{PAGE_URL}/resolve/main/{ZIP_FILE}"
PREPARED_SIDE = 256  # shorter side of the prepared copy: what the pretrained eval transform at 224 resizes to
PREPARED_BYTES_PER_IMAGE = 2 * 256 * 384 * 3  # upper estimate: a 3:2 image in the cache, as much as a PNG


def _manual_download_help(zip_path: Path, error: BaseException | None = None) -> str:
    reason = (
        f"Downloading {ZIP_FILE} from the Hub failed ({type(error).__name__}: {error}). " if error else ""
    )
    return (
        f"{reason}To place the data by hand: download {ZIP_FILE} (about 9 GB) from {ZIP_URL} "
        f"(dataset page: {PAGE_URL}), save it as {zip_path}, and run this again "
        f"(python -m helpers.data download --out {zip_path.parent}); it is then used without the network. "
        "If you are offline on purpose (HF_HUB_OFFLINE=1), use the toy dataset instead: get_dataset('toy')."
    )


def _hub_file_size() -> int | None:
    """Size in bytes of train.zip on the Hub (one HEAD request), or None when it cannot be asked."""
    try:
        url = hf_hub_url(REPO_ID, ZIP_FILE, repo_type="dataset")
        return get_hf_file_metadata(url, timeout=30).size
    except Exception:  # offline, Hub errors: the download itself will say what is wrong
        return None


def _fetch_zip(root: Path) -> tuple[Path, bool]:
    """``(zip, is the Hub's cached copy)``: ``root/train.zip`` if placed by hand, else the Hub's copy."""
    by_hand = root / ZIP_FILE
    if by_hand.is_file():
        return by_hand, False
    cached = try_to_load_from_cache(REPO_ID, ZIP_FILE, repo_type="dataset")
    if isinstance(cached, str):
        return Path(cached), True
    hub_cache = Path(constants.HF_HUB_CACHE)
    size = _hub_file_size()
    if size is not None:  # the zip, then its extraction (images barely compress: about as much again)
        if existing_parent(hub_cache).stat().st_dev == existing_parent(root).stat().st_dev:
            check_free_space(root, 2 * size, f"downloading {ZIP_FILE} ({size_text(size)}) and extracting it")
        else:
            check_free_space(hub_cache, size, f"downloading {ZIP_FILE}")
            check_free_space(root, size, f"extracting {ZIP_FILE}")
    exactly = "" if size is None else f", exactly {size_text(size)}"
    print(f"Downloading the Fake or Real Competition dataset ({IMAGE_COUNT:,} images; {ZIP_FILE} is about "
          f"9 GB{exactly}) into the Hugging Face cache, {hub_cache} ...")  # fmt: skip
    try:
        with explain_disk_full(hub_cache, f"downloading {ZIP_FILE}"):
            # Timeouts: etag_timeout, HF_HUB_DOWNLOAD_TIMEOUT; HF_HUB_OFFLINE=1 fails at once unless cached.
            path = hf_hub_download(repo_id=REPO_ID, filename=ZIP_FILE, repo_type="dataset", etag_timeout=30)
    except DiskSpaceError:
        raise
    except Exception as error:  # network, offline mode, Hub errors: all mean "no zip"
        raise RuntimeError(_manual_download_help(by_hand, error)) from error
    return Path(path), True


def _find_class_root(folder: Path) -> Path | None:
    """The folder at or below ``folder`` (2 levels at most) that holds both class folders."""
    candidates = [folder, *folder.glob("*"), *folder.glob("*/*")]
    is_root = lambda c: c.name != "__MACOSX" and all((c / n).is_dir() for n in CLASS_NAMES)  # noqa: E731
    return next(filter(is_root, candidates), None)


def count_images(class_root: str | os.PathLike) -> int:
    """Files with an image extension in ``class_root``'s class folders (nothing is decoded)."""
    return sum(len(list_image_files(Path(class_root) / name)) for name in CLASS_NAMES)


def count_listed_images(names: list[str]) -> int:
    """Image files inside a class folder, counted from a zip's listing (nothing is extracted)."""
    return sum(
        not is_junk(name)
        and name.lower().endswith(IMAGE_EXTENSIONS)
        and any(part in CLASS_NAMES for part in PurePosixPath(name).parts[:-1])
        for name in names
    )


def _remove_hub_copy(zip_path: Path) -> None:
    """Delete the Hub's cached ``train.zip`` once extracted; only a file inside the Hub's cache."""
    blob = zip_path.resolve()  # the cache stores a link snapshots/<rev>/train.zip -> blobs/<hash>
    if not blob.is_relative_to(Path(constants.HF_HUB_CACHE).resolve()):
        return
    size = blob.stat().st_size
    blob.unlink()
    zip_path.unlink(missing_ok=True)
    print(f"Deleted the downloaded {ZIP_FILE} from the Hugging Face cache ({blob}), {size_text(size)} freed.")


def download_fake_or_real(
    root: str | os.PathLike, max_side: int | None = None, *, expected_count: int = IMAGE_COUNT
) -> Path:
    """``root/train``, downloaded (or from ``root/train.zip``) and extracted once; with ``max_side``, the
    prepared copy ``<root>_<max_side>px``. A failed download says how to place the zip. Lessons 03-06."""
    root = Path(root)
    data = root / "train"
    if not (read_marker(root) and data.is_dir()):
        if data.is_dir():  # placed by hand, or moved there before the marker was written
            if _find_class_root(data) != data:
                raise RuntimeError(
                    f"{data} exists but holds {sorted(p.name for p in data.iterdir())}, not the class "
                    f"folders {list(CLASS_NAMES)}. Delete {data} and run this again."
                )
            if (count := count_images(data)) != expected_count:
                announce(f"{data} holds {count:,} images, expected {expected_count:,}. Going on.")
        else:
            zip_path, from_hub = _fetch_zip(root)

            def check_listing(names: list[str]) -> None:  # another image count is announced, and kept
                if (count := count_listed_images(names)) != expected_count:
                    announce(
                        f"{zip_path} lists {count:,} images, expected {expected_count:,}: a different "
                        "version of the dataset, or a stand-in. Going on with the images it has."
                    )

            root.mkdir(parents=True, exist_ok=True)
            partial = root / ".train.partial"
            shutil.rmtree(partial, ignore_errors=True)  # left over from a run that was killed
            try:
                extract_zip(zip_path, partial, check_listing=check_listing)
                class_root = _find_class_root(partial)
                if class_root is None:
                    raise RuntimeError(
                        f"{zip_path} has no folder with {' and '.join(CLASS_NAMES)} inside: not the "
                        f"expected archive. {_manual_download_help(root / ZIP_FILE)}"
                    )
                os.replace(class_root, data)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
            if from_hub:
                _remove_hub_copy(zip_path)
        info = {"dataset": "fake_or_real", "source": f"{REPO_ID}/{ZIP_FILE}", "count": count_images(data)}
        write_marker(root, info)
    if max_side is None:
        return data
    return make_resized_copy(data, root.parent / f"{root.name}_{max_side}px", max_side)


def prepared_name(name: str, reencoded: bool) -> str:
    """An image's unique name in the prepared copy: re-encoded ``a.jpg`` -> ``a.jpg.png``, ``c.jpg.png`` ->
    ``c.jpg.png.png``; ``fake.png`` and a copied non-PNG keep theirs."""
    stem, extension = os.path.splitext(name)
    plain_png = extension.lower() == ".png" and not stem.lower().endswith(IMAGE_EXTENSIONS)
    if plain_png or (not reencoded and extension.lower() != ".png"):
        return name
    return name + ".png"


def _copy_one(path: Path, target_dir: Path, max_side: int):
    """Write one image of the prepared copy; return (written file, its cache pixels, side) or a problem."""
    try:
        image = load_image_rgb(path)
        reencoded = min(image.size) > max_side
        target = target_dir / prepared_name(path.name, reencoded)  # "xb" below: never an overwrite
        target.parent.mkdir(parents=True, exist_ok=True)
        if reencoded:
            image = resize_shorter_side(image, max_side)
            with open(target, "xb") as out:
                image.save(out, format="PNG")
        else:  # small enough: the original bytes
            with open(path, "rb") as source, open(target, "xb") as out:
                shutil.copyfileobj(source, out)
    except ImageLoadError as error:
        return str(error)
    except FileNotFoundError:
        return vanished(path)
    return target, resize_for_cache(image, max_side), min(image.size)


def make_resized_copy(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, max_side: int) -> Path:
    """The prepared copy of an image folder (shorter sides <= ``max_side`` px, PNG; smaller ones copied) with
    its image cache; undecodable files skipped with one warning; reused when complete. Lessons 03-06."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    settings = {"dataset": "prepared_copy", "source": str(src_dir.resolve()), "max_side": max_side}
    if marker_matches(dst_dir, settings):
        return dst_dir  # without listing the originals: they may be gone
    samples, class_names = find_images(src_dir, check=False)
    check_free_space(dst_dir.parent, len(samples) * PREPARED_BYTES_PER_IMAGE, "the prepared copy")
    with building_folder(dst_dir, {**settings, "count": len(samples)}) as building:
        with explain_disk_full(dst_dir.parent, "writing the prepared copy"):
            writer = CacheWriter(building / CACHE_FOLDER, max_side)

            def copy_one(sample: tuple[Path, int]):
                path, label = sample
                relative = path.parent.relative_to(src_dir / class_names[label])
                return _copy_one(path, building / class_names[label] / relative, max_side)

            problems = []
            # Threads are enough: PIL decodes, resizes and encodes without holding the GIL.
            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                desc = f"Resizing to {max_side} px"
                for result in tqdm(pool.map(copy_one, samples), total=len(samples), desc=desc):
                    if isinstance(result, str):
                        problems.append(result)
                        continue
                    target, pixels, side = result
                    writer.add(target.relative_to(building).as_posix(), pixels, target.stat(), side)
            writer.finish()
            write_marker(building / CACHE_FOLDER, {"cache": "decoded images", "size": max_side})
        warn_skipped(problems, f"while preparing {dst_dir}")
    return dst_dir


def pack_prepared_copy(folder: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Store the prepared copy's images in ONE uncompressed zip, renamed when complete; returns it."""
    folder, archive = Path(folder), Path(archive)
    samples, _ = find_images(folder, check=False)
    total = sum(path.stat().st_size for path, _ in samples)
    check_free_space(archive.parent, total, f"storing the prepared copy as {archive.name}")
    temporary = archive.with_name(archive.name + ".partial")
    try:
        with explain_disk_full(archive.parent, f"writing {archive.name}"):
            with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as out:
                for path, _ in tqdm(samples, desc=f"Storing {archive.name}"):
                    out.write(path, path.relative_to(folder).as_posix())
        os.replace(temporary, archive)
    finally:
        temporary.unlink(missing_ok=True)
    # The folder is what unpacking the archive would give: say so, so it is reused.
    stat = archive.stat()
    write_marker(folder, (read_marker(folder) or {}) | _unpacked_from(archive, stat))
    print(f"Stored the prepared copy in {archive}: {len(samples):,} images, {size_text(stat.st_size)}.")
    return archive


def unpack_prepared_copy(archive: str | os.PathLike, folder: str | os.PathLike, max_side: int) -> Path:
    """Unpack a :func:`pack_prepared_copy` zip into ``folder``, with its image cache (reused if done)."""
    archive, folder = Path(archive), Path(folder)
    settings = {"dataset": "prepared_copy", "max_side": max_side, **_unpacked_from(archive, archive.stat())}
    if marker_matches(folder, settings):
        return folder
    print(f"Unpacking the prepared copy from {archive} to {folder} ...")
    with building_folder(folder, settings) as building:
        extract_zip(archive, building)
        build_image_cache(building, max_side)
    return folder


def _unpacked_from(archive: Path, stat: os.stat_result) -> dict:
    """What identifies an archive: a folder unpacked from it records this in its marker."""
    return {"archive": str(archive), "archive_bytes": stat.st_size, "archive_mtime_ns": stat.st_mtime_ns}


def original_fake_or_real(root: str | os.PathLike, *, expected_count: int = IMAGE_COUNT) -> Path:
    """The originals (9 GB), in ``root`` or, when that is a network drive, on this machine's disk."""
    root = Path(root)
    if is_network_filesystem(root.parent):
        root = local_scratch_dir() / root.name
    return download_fake_or_real(root, expected_count=expected_count)


def prepared_fake_or_real(
    root: str | os.PathLike, max_side: int = PREPARED_SIDE, *, expected_count: int = IMAGE_COUNT
) -> Path:
    """The prepared copy ``<root>_<max_side>px``; on a network drive (Google Drive) made on local disk, the
    home keeping ``<root>_<max_side>px.zip`` for later runtimes to unpack. Lessons 03 to 06."""
    root = Path(root)
    name = f"{root.name}_{max_side}px"
    archive = root.parent / f"{name}.zip"
    if not is_network_filesystem(root.parent):
        folder = root.parent / name
        if marker_matches(folder, {"dataset": "prepared_copy", "max_side": max_side}):
            return folder  # also when the home has moved, or the originals were deleted
        if archive.is_file():  # e.g. copied here from a home on Drive
            return unpack_prepared_copy(archive, folder, max_side)
        return download_fake_or_real(root, max_side, expected_count=expected_count)
    folder = local_scratch_dir() / name
    if archive.is_file():
        return unpack_prepared_copy(archive, folder, max_side)
    scratch_root = local_scratch_dir() / root.name
    by_hand = root / ZIP_FILE
    if by_hand.is_file() and not (scratch_root / ZIP_FILE).exists():  # placed by hand in the home
        scratch_root.mkdir(parents=True, exist_ok=True)
        (scratch_root / ZIP_FILE).symlink_to(by_hand)
    copy = download_fake_or_real(scratch_root, max_side, expected_count=expected_count)
    pack_prepared_copy(copy, archive)
    return copy
