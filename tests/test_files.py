"""helpers._files: a failed write leaves the old file; a folder appears complete or not at all."""

from __future__ import annotations

import errno
import json

import pytest

from helpers import _files as files


def test_atomic_write_replaces_the_file_only_when_the_write_finished(tmp_path):
    path = tmp_path / "numbers.json"
    files.write_json(path, {"epoch": 1})
    assert json.loads(path.read_text()) == {"epoch": 1}

    def half_then_fail(temporary):
        temporary.write_text('{"epoch": 2, "hist')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"epoch": 1}, "the old version must survive a failed write"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numbers.json"], "no temporary file left"


def test_building_folder_publishes_with_its_marker_or_leaves_nothing(tmp_path):
    target = tmp_path / "dataset"
    with files.building_folder(target, {"dataset": "demo", "count": 1}) as building:
        assert building.parent == tmp_path and building.name.startswith(".dataset.partial-")
        assert not target.exists(), "nothing is visible under the final name while building"
        (building / "a.txt").write_text("a")
    assert (target / "a.txt").read_text() == "a"
    assert files.read_marker(target) == {"dataset": "demo", "count": 1}
    assert files.marker_matches(target, {"dataset": "demo"})
    assert not files.marker_matches(target, {"dataset": "demo", "count": 2})

    with pytest.raises(KeyboardInterrupt):  # a rebuild interrupted half-way keeps the old version
        with files.building_folder(target, {"dataset": "demo", "count": 2}) as building:
            (building / "b.txt").write_text("b")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == [".complete", "a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"], "the partial folder is removed"
    assert files.read_marker(tmp_path / "nowhere") is None


def test_check_free_space_says_what_is_needed_and_what_is_free(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "free_bytes", lambda folder: 2_000_000_000)
    files.check_free_space(tmp_path, 1_000_000_000, "the download")
    with pytest.raises(files.DiskSpaceError) as error:
        files.check_free_space(tmp_path / "not" / "yet", 9_200_000_000, "the download")
    message = str(error.value)
    assert "the download needs 9.2 GB" in message and "only 2.0 GB is free" in message
    assert str(tmp_path / "not" / "yet") in message and "FAKEVIT_HOME" in message
    assert files.free_bytes(tmp_path / "missing" / "folder") > 0  # measured on the nearest parent


def test_explain_disk_full_turns_enospc_into_a_clear_error_and_lets_others_through(tmp_path):
    with pytest.raises(files.DiskSpaceError, match="filled up while writing the cache in .*No space left"):
        with files.explain_disk_full(tmp_path, "writing the cache"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(files.DiskSpaceError, match="Disk quota exceeded"):  # also wrapped in another error
        with files.explain_disk_full(tmp_path, "downloading"):
            try:
                raise OSError(errno.EDQUOT, "Disk quota exceeded")
            except OSError as cause:
                raise RuntimeError("download failed") from cause
    with pytest.raises(PermissionError):
        with files.explain_disk_full(tmp_path, "writing"):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_is_network_filesystem_reads_the_mount_of_the_path(monkeypatch):
    mounts = {"/": "ext4", "/content/drive": "fuse.drive", "/mnt/share": "nfs4", "/tmp": "tmpfs"}
    monkeypatch.setattr(files, "_mount_types", lambda: mounts)
    assert files.is_network_filesystem("/content/drive/MyDrive/fake-vit/data")
    assert files.is_network_filesystem("/mnt/share/x")
    assert not files.is_network_filesystem("/content/fake-vit/data")
    assert not files.is_network_filesystem("/tmp/x")
    monkeypatch.setattr(files, "_mount_types", dict)  # no /proc/mounts (macOS): local
    assert not files.is_network_filesystem("/content/drive/MyDrive")
