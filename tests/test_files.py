"""helpers.files: a failed write leaves the old file; a folder appears complete or not at all."""

from __future__ import annotations

import json

import pytest

from helpers import files


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
