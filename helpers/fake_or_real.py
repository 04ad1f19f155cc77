"""The real dataset: the "Fake or Real Competition" train split from the Hugging Face Hub (full mode).

``mncai/Fake_or_Real_Competition_Dataset``, file ``train.zip`` (~9 GB, 6,750 images, apache-2.0).
:func:`download_fake_or_real` fetches it with ``huggingface_hub`` (or uses a zip placed by hand),
extracts and checks it; :func:`make_resized_copy` writes a copy with smaller images that loads
several times faster (``benchmarks/data_loading.py`` measures it). Lessons 03 and 04 use it in full
mode through ``helpers.data.get_dataset("fake_or_real")``.
"""

from __future__ import annotations

import os
import shutil
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import hf_hub_download
from PIL import Image
from tqdm.auto import tqdm

from helpers.datasets import CLASS_NAMES, find_images
from helpers.files import building_folder, marker_matches, read_marker, write_marker
from helpers.images import ImageLoadError, list_image_files, load_image_rgb

REPO_ID = "mncai/Fake_or_Real_Competition_Dataset"
ZIP_FILE = "train.zip"
IMAGE_COUNT = 6750  # images in train.zip: fake_images + real_images
PAGE_URL = f"https://huggingface.co/datasets/{REPO_ID}"
ZIP_URL = f"{PAGE_URL}/resolve/main/{ZIP_FILE}"


def _manual_download_help(zip_path: Path, error: BaseException | None = None) -> str:
    reason = ""
    if error:
        reason = (
            f"Downloading {ZIP_FILE} from the Hugging Face Hub failed ({type(error).__name__}: {error}). "
        )
    return (
        f"{reason}To place the data by hand: download {ZIP_FILE} (about 9 GB) from {ZIP_URL} "
        f"(dataset page: {PAGE_URL}), save it as {zip_path}, and run this again "
        f"(python -m helpers.data download --out {zip_path.parent}); it is then used without the network. "
        "If you are offline on purpose (HF_HUB_OFFLINE=1), use the toy dataset instead: get_dataset('toy')."
    )


def _fetch_zip(root: Path) -> Path:
    """``root/train.zip`` if placed there by hand, else the Hub's cached copy (downloaded if needed)."""
    by_hand = root / ZIP_FILE
    if by_hand.is_file():
        return by_hand
    try:
        # Timeouts come from huggingface_hub (etag_timeout here, HF_HUB_DOWNLOAD_TIMEOUT for reads),
        # and HF_HUB_OFFLINE=1 makes this fail at once unless the file is already cached.
        return Path(hf_hub_download(repo_id=REPO_ID, filename=ZIP_FILE, repo_type="dataset", etag_timeout=30))
    except Exception as error:  # network, offline mode, Hub errors: all mean "no zip"
        raise RuntimeError(_manual_download_help(by_hand, error)) from error


def _find_class_root(folder: Path) -> Path | None:
    """The folder at or below ``folder`` (2 levels at most) that holds both class folders."""
    candidates = [folder, *folder.glob("*"), *folder.glob("*/*")]
    for candidate in candidates:
        if candidate.name != "__MACOSX" and all((candidate / name).is_dir() for name in CLASS_NAMES):
            return candidate
    return None


def count_images(class_root: str | os.PathLike) -> int:
    """Files with an image extension in ``class_root``'s class folders (nothing is decoded)."""
    return sum(len(list_image_files(Path(class_root) / name)) for name in CLASS_NAMES)


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, open(target, "wb") as destination:
        shutil.copyfileobj(source, destination, length=1 << 20)


def _extract_zip(zip_path: Path, into: Path) -> None:
    """Extract every member of ``zip_path`` below ``into``, with a progress bar; refuses paths outside it."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [
                m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX")
            ]
            total = sum(m.file_size for m in members)
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"Extracting {zip_path.name}") as bar:
                for info in members:
                    target = (into / info.filename).resolve()
                    if not target.is_relative_to(into.resolve()):
                        raise RuntimeError(
                            f"{zip_path}: member {info.filename!r} would be written outside {into}"
                        )
                    _extract_member(archive, info, target)
                    bar.update(info.file_size)
    except zipfile.BadZipFile as error:
        raise RuntimeError(
            f"{zip_path} is not a valid zip file ({error}); it may be an incomplete download: "
            "delete it and run this again."
        ) from error


def download_fake_or_real(
    root: str | os.PathLike, max_side: int | None = None, *, expected_count: int = IMAGE_COUNT
) -> Path:
    """Fetch and extract the Fake or Real Competition train split; return the folder with the
    class folders. Full mode of lessons 03 and 04.

    Steps, each skipped when already done (a second call does nothing):

    1. ``train.zip`` (~9 GB) from the Hugging Face dataset ``mncai/Fake_or_Real_Competition_Dataset``
       via ``huggingface_hub`` (cached), or ``root/train.zip`` if you placed it there by hand.
    2. Extract into a temporary folder next to the target, check the layout and that it holds
       ``expected_count`` images, rename it to ``root/train`` and only then write ``root/.complete``.
       An interrupted run leaves no folder that looks complete; the next run starts the extraction over.
    3. With ``max_side``, also write a copy whose shorter sides are at most ``max_side`` pixels to
       ``<root>_max<max_side>/train`` (see :func:`make_resized_copy`) and return that instead.

    Raises:
        RuntimeError: the download failed (offline, Hub error) or the archive is not as expected; the
            message says how to place the file by hand.
    """
    root = Path(root)
    data = root / "train"
    marker = read_marker(root)
    if not (marker and marker.get("count") == expected_count and data.is_dir()):
        if data.is_dir():  # placed by hand, or renamed before the marker was written
            count = count_images(data)
            if count != expected_count or _find_class_root(data) != data:
                raise RuntimeError(
                    f"{data} exists but holds {count} images in {sorted(p.name for p in data.iterdir())}, "
                    f"expected {expected_count} in {list(CLASS_NAMES)}. Delete {data} and run this again."
                )
        else:
            zip_path = _fetch_zip(root)
            root.mkdir(parents=True, exist_ok=True)
            partial = root / ".train.partial"
            shutil.rmtree(partial, ignore_errors=True)  # left over from an interrupted run
            _extract_zip(zip_path, partial)
            class_root = _find_class_root(partial)
            if class_root is None:
                shutil.rmtree(partial, ignore_errors=True)
                raise RuntimeError(
                    f"{zip_path} has no folder with {' and '.join(CLASS_NAMES)} inside: not the expected "
                    f"archive. {_manual_download_help(root / ZIP_FILE)}"
                )
            count = count_images(class_root)
            if count != expected_count:
                shutil.rmtree(partial, ignore_errors=True)
                raise RuntimeError(
                    f"{zip_path} holds {count} images, expected {expected_count}; it may be incomplete "
                    f"or a different file. {_manual_download_help(root / ZIP_FILE)}"
                )
            os.replace(class_root, data)
            shutil.rmtree(partial, ignore_errors=True)
        write_marker(
            root, {"dataset": "fake_or_real", "source": f"{REPO_ID}/{ZIP_FILE}", "count": expected_count}
        )
    if max_side is None:
        return data
    copy_root = root.parent / f"{root.name}_max{max_side}"
    return make_resized_copy(data, copy_root / "train", max_side)


def _resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Output (width, height) with the shorter side = ``short_side``, as torchvision's Resize computes it."""
    if width <= height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def make_resized_copy(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, max_side: int) -> Path:
    """Copy an ImageFolder tree, reducing every image's shorter side to ``max_side`` pixels (PNG).

    Decoding a 1.5-megapixel JPEG costs far more than training on its 224x224 crop; a copy at
    ``max_side=256`` (the pretrained eval resize at 224) loads many times faster. The resize is the
    same bilinear, antialiased one as ``build_eval_transform``, so Resize(256) then finds nothing to do.
    Smaller images are copied unchanged. Returns ``dst_dir``; reused when its marker matches.
    Full mode of lessons 03 and 04.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    samples, class_names = find_images(src_dir, check=False)
    settings = {
        "dataset": "resized_copy",
        "source": str(src_dir.resolve()),
        "max_side": max_side,
        "count": len(samples),
    }
    if marker_matches(dst_dir, settings):
        return dst_dir

    with building_folder(dst_dir, settings) as building:

        def copy_one(sample: tuple[Path, int]) -> str | None:
            path, label = sample
            relative = path.relative_to(src_dir / class_names[label])
            target = building / class_names[label] / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                image = load_image_rgb(path)
            except ImageLoadError as error:
                return str(error)
            if min(image.size) <= max_side:
                shutil.copyfile(path, target)  # small enough: the original bytes
            else:
                image = image.resize(_resized_size(*image.size, max_side), Image.Resampling.BILINEAR)
                if target.suffix.lower() != ".png":
                    target = target.with_name(target.name + ".png")  # photo.jpg -> photo.jpg.png, lossless
                image.save(target, format="PNG")
            return None

        for name in class_names:
            (building / name).mkdir()
        # Threads are enough: PIL decodes, resizes and encodes without holding the GIL.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            progress = tqdm(
                pool.map(copy_one, samples), total=len(samples), desc=f"Resizing to {max_side} px"
            )
            results = list(progress)
        skipped = [r for r in results if r is not None]
        if skipped:
            warnings.warn(
                f"Skipped {len(skipped)} undecodable file(s):\n  " + "\n  ".join(skipped[:20]), stacklevel=2
            )
    return dst_dir
