"""helpers.data.sources: datasets by name, and the `python -m helpers.data` command line."""

from __future__ import annotations

import pytest

from helpers.data import sources as data
from helpers.data.datasets import find_images
from helpers.data.sources import get_dataset


def test_get_dataset_makes_the_toy_set_once_and_knows_its_names(tmp_path, capsys):
    root = get_dataset("toy", root=tmp_path / "toy", images_per_class=3, image_size=16)
    assert "Made the toy dataset" in capsys.readouterr().out
    assert get_dataset("toy", root=tmp_path / "toy", images_per_class=3, image_size=16) == root
    assert capsys.readouterr().out == ""  # reused silently
    with pytest.raises(ValueError, match="'toy' and 'fake_or_real'"):
        get_dataset("cifar")


def test_make_toy_command_line(tmp_path, capsys):
    out = tmp_path / "cli_toy"
    argv = ["make-toy", "--out", str(out), "--images-per-class", "3", "--image-size", "16", "--seed", "2"]
    assert data.main(argv) == 0
    assert "6 images ready" in capsys.readouterr().out
    assert len(find_images(out)[0]) == 6
