"""helpers.course: the course home and its folders, Colab's Drive set-up, and expect().

The small/full mode tests live in test_repo.py beside the notebook conventions they serve.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch

from helpers import course

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_home(monkeypatch):
    """No $FAKEVIT_HOME or $FAKEVIT_FIGURES, whatever the caller's environment says; whatever a test
    (or setup_colab) sets them to is undone afterwards."""
    for name in (course.HOME_ENV, course.FIGURES_ENV):
        monkeypatch.setenv(name, "")  # records the value to restore, even when there was none
        monkeypatch.delenv(name)


def test_home_is_the_checkout_when_no_home_is_set(no_home, monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    assert course.home() == ROOT
    assert course.data_dir() == ROOT / "data"
    assert course.detector_dir() == ROOT / "build" / "detector"


def test_home_is_the_working_directory_outside_a_checkout(no_home, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert course.home() == tmp_path.resolve()
    assert course.figures_dir() == tmp_path.resolve() / "figures"
    assert (tmp_path / "figures").is_dir()


def test_fakevit_home_wins_and_every_folder_is_under_it(no_home, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # inside the checkout, and still the variable wins
    monkeypatch.setenv(course.HOME_ENV, str(tmp_path / "home"))
    assert course.home() == tmp_path / "home"
    assert course.data_dir() == tmp_path / "home" / "data"
    assert course.detector_dir() == tmp_path / "home" / "build" / "detector"
    assert course.figures_dir() == tmp_path / "home" / "figures"
    monkeypatch.setenv(course.FIGURES_ENV, str(tmp_path / "elsewhere"))
    assert course.figures_dir() == tmp_path / "elsewhere", "$FAKEVIT_FIGURES still picks the figures"


def test_a_relative_home_is_made_absolute(no_home, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(course.HOME_ENV, "my-home")
    assert course.home() == tmp_path.resolve() / "my-home"


# --------------------------------------------------------------------------------------------------
# Colab and Google Drive
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_colab(monkeypatch, tmp_path, no_home):
    """A stand-in ``google.colab`` module whose ``drive.mount`` records its calls; Drive is tmp_path."""
    mounts: list[str] = []
    drive = types.SimpleNamespace(mount=mounts.append)
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(course, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setattr(course, "DRIVE_HOME", tmp_path / "drive" / "MyDrive" / "fake-vit")
    monkeypatch.chdir(tmp_path)
    return mounts


def test_setup_colab_outside_colab_changes_nothing(no_home, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    assert course.setup_colab(use_drive=True) == tmp_path.resolve()
    assert course.HOME_ENV not in course.os.environ


def test_setup_colab_mounts_drive_and_makes_it_the_home(fake_colab, tmp_path, capsys):
    home = course.setup_colab(use_drive=True)
    assert fake_colab == [str(tmp_path / "drive")]
    assert home == tmp_path / "drive" / "MyDrive" / "fake-vit" == course.home()
    assert home.is_dir()
    assert course.os.environ[course.HOME_ENV] == str(home)  # also for processes the lesson starts
    assert course.detector_dir() == home / "build" / "detector"
    assert "Google Drive" in capsys.readouterr().out

    assert course.setup_colab(use_drive=True) == home  # run again: already set, no second mount
    assert len(fake_colab) == 1


def test_setup_colab_without_drive_keeps_the_runtime_folder_and_says_so(fake_colab, tmp_path, capsys):
    assert course.setup_colab(use_drive=False) == tmp_path.resolve()
    assert fake_colab == []
    assert course.HOME_ENV not in course.os.environ
    assert "lost when this Colab runtime ends" in capsys.readouterr().out


def test_a_refused_drive_mount_is_announced_and_the_lesson_goes_on(fake_colab, monkeypatch, tmp_path, capsys):
    def refuse(path):
        raise ValueError("mount failed")

    monkeypatch.setattr(sys.modules["google.colab"].drive, "mount", refuse)
    assert course.setup_colab(use_drive=True) == tmp_path.resolve()
    out = capsys.readouterr().out
    assert "ValueError: mount failed" in out and "LOST" in out and "USE_DRIVE = False" in out
    assert course.HOME_ENV not in course.os.environ


# --------------------------------------------------------------------------------------------------
# expect(): asserts in small mode, warnings in full mode
# --------------------------------------------------------------------------------------------------


def test_expect_raises_in_small_mode_when_the_result_is_missed():
    assert course.expect(True, "fine", mode="small") is True
    with pytest.raises(AssertionError, match="^accuracy 0.55 below 0.6$"):
        course.expect(0.55 > 0.6, "accuracy 0.55 below 0.6", mode="small")


def test_expect_warns_loudly_once_in_full_mode_and_goes_on(monkeypatch, capsys):
    monkeypatch.setattr(course, "_warned", set())
    assert course.expect(True, "fine", mode="full") is True
    assert capsys.readouterr().out == ""
    assert course.expect(False, "margin 0.1 below 0.2", mode="full") is False
    out = capsys.readouterr().out
    assert "NOT AS EXPECTED (full mode): margin 0.1 below 0.2" in out and "!" * 80 in out
    assert course.expect(False, "margin 0.1 below 0.2", mode="full") is False
    assert capsys.readouterr().out == "", "the same message is printed once"


def test_expect_needs_a_resolved_mode():
    with pytest.raises(ValueError, match="resolve_mode"):
        course.expect(True, "x", mode="auto")


def test_the_readme_names_the_drive_folder_and_parameter_the_code_uses():
    readme = (ROOT / "README.md").read_text()
    assert course.DRIVE_HOME.parts[-2:] == ("MyDrive", "fake-vit")
    assert "My Drive/fake-vit" in readme and "course.setup_colab(USE_DRIVE)" in readme


def test_share_cpus_gives_torch_one_thread_per_idle_cpu(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        cpus = course.free_cpus()[0]
        monkeypatch.setattr(course, "busy_cpus", lambda: cpus + 3.0)  # another training beside us
        assert course.share_cpus() == (1, cpus) and torch.get_num_threads() == 1
        monkeypatch.setattr(course, "busy_cpus", lambda: 0.1)  # an idle machine: every CPU
        assert course.share_cpus() == (cpus, cpus)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice stays
        torch.set_num_threads(cpus)
        monkeypatch.setattr(course, "busy_cpus", lambda: cpus + 3.0)
        assert course.share_cpus() == (cpus, cpus)
    finally:
        torch.set_num_threads(before)


def test_busy_cpus_is_a_number_of_cpus():
    assert 0 <= course.busy_cpus(0.05) <= (os.cpu_count() or 1) + 0.01


def test_sizes_picks_the_mode_applies_overrides_and_refuses_unknown_names():
    small, full = {"EPOCHS": 2, "IMAGE_SIZE": 32}, {"EPOCHS": 7, "IMAGE_SIZE": 224}
    assert course.sizes("small", small=small, full=full).EPOCHS == 2
    sized = course.sizes("full", small=small, full=full, overrides={"EPOCHS": 1})
    assert (sized.EPOCHS, sized.IMAGE_SIZE) == (1, 224)
    with pytest.raises(ValueError, match="EPOCS"):
        course.sizes("full", small=small, full=full, overrides={"EPOCS": 1})
    with pytest.raises(ValueError, match="different sizes"):
        course.sizes("small", small=small, full={"EPOCHS": 7})
