"""helpers.data.fake_or_real: download, extraction, the prepared copy and its one-file form, without the
network.

``hf_hub_download`` is replaced by a function returning a small zip built here, stored the way the
Hugging Face cache stores files (a link in ``snapshots/`` to a blob), in a cache folder of the test's own.
"""

from __future__ import annotations

import errno
import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants
from PIL import Image

from helpers import _files as files
from helpers._files import DiskSpaceError
from helpers.data import archives, fake_or_real
from helpers.data import sources as data
from helpers.data.cache import ImageCache, folder_dataset, resize_for_cache
from helpers.data.datasets import CLASS_NAMES, find_images
from helpers.data.fake_or_real import download_fake_or_real, make_resized_copy, prepared_name
from helpers.data.images import load_image_rgb
from helpers.data.transforms import pretrained_transforms, scratch_transforms


def _noise_jpeg(rng: np.random.Generator, width: int = 60, height: int = 40) -> bytes:
    """A JPEG of random pixels, as bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _dataset_zip(path: Path, per_class: int = 3, prefix: str = "train/") -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for name in CLASS_NAMES:
            archive.writestr(f"{prefix}{name}/", "")
            for i in range(per_class):
                archive.writestr(f"{prefix}{name}/{i}.jpg", _noise_jpeg(rng))
        archive.writestr(f"__MACOSX/{prefix}fake_images/._0.jpg", b"apple double junk")
    return path


class FakeHub:
    """``hf_hub_download`` answered from a zip in a Hugging Face cache of the test's own."""

    def __init__(self, tmp_path: Path, monkeypatch, zip_maker=_dataset_zip):
        self.cache = tmp_path / "hf_cache"
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(self.cache))
        repo = self.cache / "datasets--mncai--Fake_or_Real_Competition_Dataset"
        self.blob = zip_maker(repo / "blobs" / "0123abcd")
        self.snapshot = repo / "snapshots" / "main" / "train.zip"
        self.snapshot.parent.mkdir(parents=True)
        self.snapshot.symlink_to(self.blob)
        self.calls: list[tuple] = []
        self.size = self.blob.stat().st_size
        monkeypatch.setattr(fake_or_real, "hf_hub_download", self.download)
        monkeypatch.setattr(fake_or_real, "try_to_load_from_cache", lambda *args, **kwargs: None)
        monkeypatch.setattr(fake_or_real, "_hub_file_size", lambda: self.size)

    def download(self, repo_id, filename, **kwargs):
        self.calls.append((repo_id, filename, kwargs.get("repo_type")))
        return str(self.snapshot)


def _zip_in(folder: Path, **kwargs):
    folder.parent.mkdir(parents=True, exist_ok=True)
    return _dataset_zip(folder, **kwargs)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    return FakeHub(tmp_path, monkeypatch, zip_maker=_zip_in)


def test_download_extracts_deletes_the_hub_copy_and_is_idempotent(tmp_path, fake_hub, capsys):
    root = tmp_path / "fake_or_real"
    folder = download_fake_or_real(root, expected_count=6)
    assert folder == root / "train"
    assert fake_hub.calls == [(fake_or_real.REPO_ID, "train.zip", "dataset")]
    samples, class_names = find_images(folder)
    assert class_names == list(CLASS_NAMES) and len(samples) == 6
    assert json.loads((root / ".complete").read_text())["count"] == 6
    assert not (root / "__MACOSX").exists() and not (root / ".train.partial").exists()
    out = capsys.readouterr().out
    assert "6,750 images" in out and "9 GB" in out, "the size is announced before downloading"
    assert not fake_hub.blob.exists() and not fake_hub.snapshot.is_symlink(), "the 9 GB zip is deleted"
    assert "Deleted the downloaded train.zip" in out and str(fake_hub.blob) in out and "freed" in out
    stamp = (folder / "fake_images" / "0.jpg").stat().st_mtime_ns
    assert download_fake_or_real(root, expected_count=6) == folder
    assert len(fake_hub.calls) == 1, "a complete dataset must not be downloaded again"
    assert (folder / "fake_images" / "0.jpg").stat().st_mtime_ns == stamp


def test_a_count_other_than_expected_is_said_before_extracting_and_the_images_are_kept(
    tmp_path, fake_hub, monkeypatch, capsys
):
    root = tmp_path / "fake_or_real"
    real_extract = archives._extract_member

    said: list[str] = []

    def extract_after_the_warning(*args):
        said.append(capsys.readouterr().out)
        assert "lists 6 images, expected 6,750" in said[0], "said before the first member is extracted"
        real_extract(*args)

    monkeypatch.setattr(archives, "_extract_member", extract_after_the_warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on stdout, loudly (course.announce), not as red stderr
        folder = download_fake_or_real(root)  # expects the real 6,750
    monkeypatch.setattr(archives, "_extract_member", real_extract)
    assert len(find_images(folder)[0]) == 6, "the stand-in's images are kept and used"
    assert json.loads((root / ".complete").read_text())["count"] == 6


def test_interrupted_extraction_leaves_nothing_that_looks_complete(tmp_path, fake_hub, monkeypatch):
    root = tmp_path / "fake_or_real"
    real_extract = archives._extract_member
    count = {"n": 0}

    def extract_then_die(*args):
        count["n"] += 1
        if count["n"] == 4:
            raise KeyboardInterrupt  # the user pressed stop half-way
        real_extract(*args)

    monkeypatch.setattr(archives, "_extract_member", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        download_fake_or_real(root, expected_count=6)
    assert sorted(p.name for p in root.iterdir()) == [], "no train/, no marker, no partial folder"
    assert fake_hub.blob.exists(), "the zip is only deleted after a complete extraction"
    monkeypatch.setattr(archives, "_extract_member", real_extract)
    folder = download_fake_or_real(root, expected_count=6)
    assert len(find_images(folder)[0]) == 6


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name on purpose below
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in members:
                archive.writestr(name, content)
    return path


def test_a_zip_slip_listing_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    members = [("train/fake_images/a.jpg", b"x"), ("../evil.jpg", b"x")]
    monkeypatch.setattr(fake_or_real, "hf_hub_download", None)  # must not be reached
    root = tmp_path / "fake_or_real"
    root.mkdir()
    _write_zip(root / "train.zip", members)
    written = []
    monkeypatch.setattr(archives, "_extract_member", lambda *args: written.append(args))
    with pytest.raises(RuntimeError, match="'../evil.jpg' would be written outside") as error:
        download_fake_or_real(root, expected_count=1)
    assert str(root / "train.zip") in str(error.value)
    assert written == [] and sorted(p.name for p in root.iterdir()) == ["train.zip"]
    assert not (tmp_path / "evil.jpg").exists()


def test_declared_sizes_above_the_free_space_are_refused_before_extracting(tmp_path, monkeypatch):
    root = tmp_path / "fake_or_real"
    root.mkdir()
    _dataset_zip(root / "train.zip")
    listing = zipfile.ZipFile(root / "train.zip").infolist()
    declared = sum(m.file_size for m in listing if not m.filename.startswith("__MACOSX"))
    monkeypatch.setattr(files, "free_bytes", lambda folder: declared - 1)
    monkeypatch.setattr(archives, "_extract_member", None)  # must not be reached
    with pytest.raises(DiskSpaceError) as error:
        download_fake_or_real(root, expected_count=6)
    message = str(error.value)
    assert "extracting train.zip" in message and str(root) in message and "free" in message
    assert sorted(p.name for p in root.iterdir()) == ["train.zip"], "the partial folder is removed"


def test_free_space_is_checked_before_the_download(tmp_path, fake_hub, monkeypatch):
    monkeypatch.setattr(files, "free_bytes", lambda folder: fake_hub.size)  # the zip fits, its extraction not
    with pytest.raises(DiskSpaceError, match=r"downloading train.zip .* and extracting it"):
        download_fake_or_real(tmp_path / "fake_or_real", expected_count=6)
    assert fake_hub.calls == [], "nothing is downloaded when it cannot fit"


def test_a_full_disk_during_extraction_is_a_clear_error_and_leaves_no_partial_folder(
    tmp_path, fake_hub, monkeypatch
):
    root = tmp_path / "fake_or_real"
    real_extract = archives._extract_member

    def fill_up(archive, info, target):
        if target.name == "1.jpg":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_extract(archive, info, target)

    monkeypatch.setattr(archives, "_extract_member", fill_up)
    with pytest.raises(DiskSpaceError, match="filled up while extracting train.zip") as error:
        download_fake_or_real(root, expected_count=6)
    assert "No space left on device" in str(error.value) and "is free now" in str(error.value)
    assert sorted(p.name for p in root.iterdir()) == []


def test_download_offline_error_says_how_to_place_the_file_by_hand(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError(
            "Cannot find the requested files in the disk cache and outgoing traffic has been disabled."
        )

    monkeypatch.setattr(fake_or_real, "hf_hub_download", offline)
    monkeypatch.setattr(fake_or_real, "_hub_file_size", lambda: None)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    root = tmp_path / "fake_or_real"
    with pytest.raises(RuntimeError) as error:
        download_fake_or_real(root)
    message = str(error.value)
    assert "LocalEntryNotFoundError" in message and "outgoing traffic has been disabled" in message
    assert (
        fake_or_real.ZIP_URL in message and str(root / "train.zip") in message and "run this again" in message
    )


def test_download_with_hf_hub_offline_fails_fast_through_the_real_client(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(RuntimeError, match="place the data by hand"):
        download_fake_or_real(tmp_path / "fake_or_real")


def test_download_uses_a_zip_placed_by_hand_without_the_network_and_keeps_it(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be used when train.zip was placed by hand")

    monkeypatch.setattr(fake_or_real, "hf_hub_download", no_network)
    root = tmp_path / "fake_or_real"
    root.mkdir()
    _dataset_zip(root / "train.zip", per_class=2, prefix="")  # a zip without the top-level train/ folder
    folder = download_fake_or_real(root, expected_count=4)
    assert sorted(p.name for p in folder.iterdir()) == list(CLASS_NAMES)
    assert (root / "train.zip").is_file(), "a zip placed by hand is never deleted"


# ---------------------------------------------------------------------------------------------
# The prepared copy
# ---------------------------------------------------------------------------------------------


def test_prepared_names_never_collide():
    names = ["c.jpg", "c.jpg.png", "c.png", "c.PNG", "c.webp.png", "c.png.png", "d.tif"]
    for reencoded in (True, False):
        outputs = [prepared_name(name, reencoded) for name in names]
        assert len(set(outputs)) == len(names), outputs
    mixed = {prepared_name("c.jpg", True), prepared_name("c.jpg.png", False), prepared_name("c.png", False)}
    assert mixed == {"c.jpg.png", "c.jpg.png.png", "c.png"}
    assert prepared_name("d.tif", False) == "d.tif" and prepared_name("d.tif", True) == "d.tif.png"


def test_resized_copy_names_pixels_skips_and_cache(tmp_path, textured_rgb):
    src = tmp_path / "src"
    for name in CLASS_NAMES:
        (src / name).mkdir(parents=True)
    fakes = src / "fake_images"
    originals = {
        "c.jpg": textured_rgb(40, 60, 1),  # (H, W, 3): resized to 20 x 30, re-encoded as c.jpg.png
        "c.jpg.png": textured_rgb(30, 30, 2),  # an original with that very name: -> c.jpg.png.png
        "small.jpg": textured_rgb(16, 24, 3),  # shorter side below 20: copied byte for byte
    }
    for name, pixels in originals.items():
        Image.fromarray(pixels).save(fakes / name, format="JPEG" if name.endswith(".jpg") else "PNG")
    Image.fromarray(textured_rgb(24, 24, 4)).save(src / "real_images" / "r.png")
    (src / "real_images" / "broken.png").write_bytes(b"not a png")
    (src / "real_images" / "gone.png").symlink_to(src / "real_images" / "deleted.png")  # vanished

    with pytest.warns(UserWarning, match="Skipped 2 undecodable") as caught:
        copy = make_resized_copy(src, tmp_path / "copy", max_side=20)
    message = str(next(w for w in caught if "Skipped" in str(w.message)).message)
    assert "broken.png" in message and "gone.png" in message and "vanished" in message
    assert sorted(p.name for p in (copy / "fake_images").iterdir()) == [
        "c.jpg.png",
        "c.jpg.png.png",
        "small.jpg",
    ]
    assert (copy / "fake_images" / "small.jpg").read_bytes() == (fakes / "small.jpg").read_bytes()
    resized = np.asarray(Image.open(copy / "fake_images" / "c.jpg.png"))
    assert resized.shape == (20, 30, 3)
    expected = Image.open(fakes / "c.jpg").convert("RGB").resize((30, 20), Image.Resampling.BILINEAR)
    assert np.array_equal(resized, np.asarray(expected)), "c.jpg.png holds the resized c.jpg"
    assert np.asarray(Image.open(copy / "fake_images" / "c.jpg.png.png")).shape == (20, 20, 3)

    cache = ImageCache.open(copy)  # made with the copy: the pixels of every file at 20 px
    samples, _ = find_images(copy)
    assert cache is not None and cache.size == 20 and len(samples) == 4
    for path, _ in samples:  # small.jpg included: cached upscaled, as Resize(20) would give it
        expected = resize_for_cache(load_image_rgb(path), 20)  # (3, H, W)
        assert np.array_equal(cache.tensor(cache.row(path)).numpy(), expected), path.name
    assert folder_dataset(samples, scratch_transforms(20)[1]).cached == 4  # resizes to 20: all of them
    # Resizing to 18 would resize small.jpg twice (16 -> 20 -> 18) from the cache: it is decoded instead.
    assert folder_dataset(samples, pretrained_transforms(16)[1]).cached == 3

    stamp = (copy / ".complete").stat().st_mtime_ns
    assert make_resized_copy(src, tmp_path / "copy", max_side=20) == copy
    assert (copy / ".complete").stat().st_mtime_ns == stamp, "reused, not made again"


@pytest.fixture
def network_home(tmp_path, monkeypatch):
    """A course home that looks like Google Drive, and this runtime's local disk."""
    home = tmp_path / "drive" / "data"
    home.mkdir(parents=True)
    monkeypatch.setattr(fake_or_real, "is_network_filesystem", lambda path: Path(path).is_relative_to(home))
    monkeypatch.setattr(fake_or_real, "local_scratch_dir", lambda: tmp_path / "runtime_1")
    return home


def test_a_home_on_drive_keeps_one_zip_that_a_new_runtime_unpacks_without_downloading(
    tmp_path, fake_hub, network_home, monkeypatch, capsys
):
    root = network_home / "fake_or_real"
    folder = data.get_dataset("fake_or_real", root=root, max_side=20, expected_count=6)
    assert folder == tmp_path / "runtime_1" / "fake_or_real_20px"
    assert sorted(p.name for p in network_home.iterdir()) == ["fake_or_real_20px.zip"], (
        "the home keeps one file; originals and the working copy stay on the runtime's disk"
    )
    first, _ = find_images(folder)
    assert len(first) == 6 and len(fake_hub.calls) == 1
    assert data.get_dataset("fake_or_real", root=root, max_side=20) == folder  # same runtime: as it is
    assert "Unpacking" not in capsys.readouterr().out

    # A new runtime: an empty local disk, and no network.
    monkeypatch.setattr(fake_or_real, "local_scratch_dir", lambda: tmp_path / "runtime_2")
    monkeypatch.setattr(fake_or_real, "hf_hub_download", None)
    again = data.get_dataset("fake_or_real", root=root, max_side=20)
    assert again == tmp_path / "runtime_2" / "fake_or_real_20px"
    assert "Unpacking the prepared copy" in capsys.readouterr().out
    second, _ = find_images(again)
    assert [p.relative_to(again) for p, _ in second] == [p.relative_to(folder) for p, _ in first]
    for (a, _), (b, _) in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert (
        ImageCache.open(again) is not None
        and folder_dataset(second, pretrained_transforms(16)[1]).cached == 6
    )


def test_get_dataset_gives_the_prepared_copy_and_keeps_it_without_the_originals(tmp_path, fake_hub):
    root = tmp_path / "for"
    folder = data.get_dataset("fake_or_real", root=root, expected_count=6)
    assert folder == tmp_path / "for_256px", "the prepared copy at 256 px, beside the originals"
    assert ImageCache.open(folder).size == 256
    assert data.get_dataset("fake_or_real", root=root, max_side=None) == root / "train", "the originals"
    for path in (root / "train" / "fake_images").iterdir():
        path.unlink()
    assert data.get_dataset("fake_or_real", root=root) == folder and len(fake_hub.calls) == 1
    moved = tmp_path / "moved_home"
    moved.mkdir()
    os.replace(folder, moved / folder.name)  # the whole home moved elsewhere: still reused as it is
    assert data.get_dataset("fake_or_real", root=moved / "for") == moved / folder.name
    assert len(fake_hub.calls) == 1 and not (moved / "for").exists()


def test_prepared_copy_on_a_local_home_unpacks_a_zip_copied_from_drive(tmp_path, fake_hub, network_home):
    data.get_dataset("fake_or_real", root=network_home / "fake_or_real", max_side=20, expected_count=6)
    laptop = tmp_path / "laptop" / "data"
    laptop.mkdir(parents=True)
    os.replace(network_home / "fake_or_real_20px.zip", laptop / "fake_or_real_20px.zip")
    folder = data.get_dataset("fake_or_real", root=laptop / "fake_or_real", max_side=20)
    assert folder == laptop / "fake_or_real_20px" and len(find_images(folder)[0]) == 6


def test_download_command_line_prepares_a_copy_and_reports_a_full_disk(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fake_or_real, "hf_hub_download", None)  # a zip placed by hand: no network
    root = tmp_path / "fake_or_real"
    root.mkdir()
    _dataset_zip(root / "train.zip")
    monkeypatch.setattr(files, "free_bytes", lambda folder: 10)
    assert data.main(["download", "--out", str(root), "--max-side", "20"]) == 1
    assert capsys.readouterr().err.startswith("error: extracting train.zip")
    monkeypatch.undo()
    monkeypatch.setattr(fake_or_real, "hf_hub_download", None)
    assert data.main(["download", "--out", str(root), "--max-side", "20"]) == 0
    out = capsys.readouterr().out
    assert "lists 6 images" in out and f"{tmp_path / 'fake_or_real_20px'}: 6 images ready" in out
