"""helpers.fake_or_real: download, extraction and the resized copy, without the network.

Only ``hf_hub_download`` is replaced, by a function returning a small zip built here.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import data, fake_or_real
from helpers.datasets import CLASS_NAMES, find_images
from helpers.fake_or_real import download_fake_or_real, make_resized_copy


def _all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """hf_hub_download replaced by a function returning a small zip; ``calls`` counts the calls."""
    zip_path = _dataset_zip(tmp_path / "hub_cache_train.zip")
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs.get("repo_type")))
        return str(zip_path)

    monkeypatch.setattr(fake_or_real, "hf_hub_download", fake_download)
    return calls


def test_download_extracts_checks_and_is_idempotent(tmp_path, fake_hub):
    root = tmp_path / "fake_or_real"
    folder = download_fake_or_real(root, expected_count=6)
    assert folder == root / "train"
    assert fake_hub == [(fake_or_real.REPO_ID, "train.zip", "dataset")]
    samples, class_names = find_images(folder)
    assert class_names == list(CLASS_NAMES) and len(samples) == 6
    assert json.loads((root / ".complete").read_text())["count"] == 6
    assert not (root / "__MACOSX").exists() and not (root / ".train.partial").exists()
    stamp = (folder / "fake_images" / "0.jpg").stat().st_mtime_ns
    assert download_fake_or_real(root, expected_count=6) == folder
    assert len(fake_hub) == 1, "a complete dataset must not be downloaded again"
    assert (folder / "fake_images" / "0.jpg").stat().st_mtime_ns == stamp


def test_interrupted_extraction_leaves_nothing_that_looks_complete(tmp_path, fake_hub, monkeypatch):
    root = tmp_path / "fake_or_real"
    real_extract = fake_or_real._extract_member
    count = {"n": 0}

    def extract_then_die(*args):
        count["n"] += 1
        if count["n"] == 4:
            raise KeyboardInterrupt  # the user pressed stop half-way
        real_extract(*args)

    monkeypatch.setattr(fake_or_real, "_extract_member", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        download_fake_or_real(root, expected_count=6)
    assert not (root / "train").exists() and not (root / ".complete").exists()
    assert (root / ".train.partial").exists()  # the half-done folder has a name that says so
    monkeypatch.setattr(fake_or_real, "_extract_member", real_extract)
    folder = download_fake_or_real(root, expected_count=6)
    assert len(find_images(folder)[0]) == 6
    assert not (root / ".train.partial").exists()


def test_download_rejects_an_archive_with_the_wrong_number_of_images(tmp_path, fake_hub):
    root = tmp_path / "fake_or_real"
    with pytest.raises(RuntimeError, match="holds 6 images, expected 6750"):
        download_fake_or_real(root)
    assert not (root / ".complete").exists() and not (root / "train").exists()


def test_download_offline_error_says_how_to_place_the_file_by_hand(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError(
            "Cannot find the requested files in the disk cache and outgoing traffic has been disabled."
        )

    monkeypatch.setattr(fake_or_real, "hf_hub_download", offline)
    root = tmp_path / "fake_or_real"
    with pytest.raises(RuntimeError) as error:
        download_fake_or_real(root)
    message = str(error.value)
    assert "LocalEntryNotFoundError" in message and "outgoing traffic has been disabled" in message
    assert (
        fake_or_real.ZIP_URL in message and str(root / "train.zip") in message and "run this again" in message
    )


def test_download_with_hf_hub_offline_fails_fast_through_the_real_client(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(RuntimeError, match="place the data by hand"):
        download_fake_or_real(tmp_path / "fake_or_real")


def test_download_uses_a_zip_placed_by_hand_without_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be used when train.zip was placed by hand")

    monkeypatch.setattr(fake_or_real, "hf_hub_download", no_network)
    root = tmp_path / "fake_or_real"
    root.mkdir()
    _dataset_zip(root / "train.zip", per_class=2, prefix="")  # a zip without the top-level train/ folder
    folder = download_fake_or_real(root, expected_count=4)
    assert sorted(p.name for p in folder.iterdir()) == list(CLASS_NAMES)


def test_download_max_side_writes_a_resized_copy_with_the_same_layout(tmp_path, fake_hub):
    root = tmp_path / "fake_or_real"
    small = download_fake_or_real(root, max_side=20, expected_count=6)
    assert small == tmp_path / "fake_or_real_max20" / "train"
    samples, class_names = find_images(small)
    assert class_names == list(CLASS_NAMES) and len(samples) == 6
    for path, _ in samples:
        assert min(Image.open(path).size) == 20 and max(Image.open(path).size) == 30  # 60x40 -> 30x20
    stamp = samples[0][0].stat().st_mtime_ns
    assert download_fake_or_real(root, max_side=20, expected_count=6) == small
    assert samples[0][0].stat().st_mtime_ns == stamp and len(fake_hub) == 1
    copy = make_resized_copy(root / "train", tmp_path / "big", max_side=100)  # no-op size: same bytes
    assert _all_files(copy / "fake_images") == _all_files(root / "train" / "fake_images")


def test_get_dataset_fake_or_real_announces_the_size_first(tmp_path, fake_hub, capsys):
    folder = data.get_dataset("fake_or_real", root=tmp_path / "for", expected_count=6)
    announcement = capsys.readouterr().out
    assert "6,750 images" in announcement and "9 GB" in announcement
    assert folder == tmp_path / "for" / "train"
