"""helpers.train.state through fit: files named by epoch, nothing unpickled, and a kill at any
moment (mid-epoch, or at any step of a save) resumes to exactly the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from helpers import _files as files
from helpers.train import loop, run
from helpers.train import state as training_state
from helpers.train.recipes import get_recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

RECIPE = get_recipe("scratch", epochs=4, lr=3e-3)
TIMING_KEYS = ("seconds", "train_images_per_second")


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


def assert_same_run(resumed: dict, straight: dict) -> None:
    assert without_timings(resumed["history"]) == without_timings(straight["history"])
    assert resumed["best_epoch"] == straight["best_epoch"]
    assert resumed["val"] == straight["val"] and resumed["test"] == straight["test"]


class KilledAfter:
    """A train loader that dies (like Ctrl-C or a lost Colab session) after ``batches`` batches."""

    def __init__(self, loader: DataLoader, batches: int):
        self.loader, self.batches = loader, batches
        self.generator, self.batch_size = loader.generator, loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.batches == 0:
                raise KeyboardInterrupt
            self.batches -= 1
            yield batch


@pytest.mark.parametrize("generator", [True, False], ids=["loader-generator", "global-rng"])
def test_resume_after_a_kill_mid_epoch_gives_exactly_the_uninterrupted_run(
    tmp_path, generator, synthetic_loaders, tiny_vit
):
    train, val, test = synthetic_loaders(generator=generator)
    straight_model = tiny_vit()
    settings = dict(device="cpu", test_loader=test, seed=7, progress=False)
    straight = loop.fit(straight_model, train, val, RECIPE, **settings)

    # Killed in the middle of epoch 3 (4 batches per epoch): epochs 1-2 are saved.
    train, val, test = synthetic_loaders(generator=generator)
    with pytest.raises(KeyboardInterrupt):
        run.resumable_fit(
            tiny_vit(), KilledAfter(train, batches=2 * 4 + 2), val, RECIPE, out_dir=tmp_path, **settings
        )
    folder = tmp_path / "training_state"
    trainer = json.loads((folder / "trainer.json").read_text())
    assert trainer["epoch"] == 2 and trainer["settings"]["recipe"] == RECIPE.to_dict()
    best = f"best-{trainer['best_epoch']:04d}.safetensors"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [best, "optimizer-0002.pt", "trainer.json", "weights-0002.safetensors"]
    )  # epoch 1's files are gone, no temporary files are left
    assert trainer["files"] == {
        "weights": "weights-0002.safetensors",
        "best": best,
        "optimizer": "optimizer-0002.pt",
    }
    # Nothing is unpickled: the optimizer state loads with weights_only=True, weights are safetensors.
    state = torch.load(folder / "optimizer-0002.pt", weights_only=True)
    assert state["epoch"] == 2 and state["optimizer"]["state"]
    assert load_file(folder / "weights-0002.safetensors").keys() == straight_model.state_dict().keys()

    # Resume into a model with other initial weights: they are replaced by the saved ones.
    train, val, test = synthetic_loaders(generator=generator)
    resumed_model = tiny_vit(seed=123)
    resumed = run.resumable_fit(resumed_model, train, val, RECIPE, out_dir=tmp_path, resume=True, **settings)
    assert_same_run(resumed, straight)
    for key, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    assert json.loads((folder / "trainer.json").read_text())["epoch"] == 4


def test_resume_with_other_settings_is_refused_naming_each_difference(tmp_path, synthetic_loaders, tiny_vit):
    train, val, _ = synthetic_loaders()
    one_epoch = get_recipe("scratch", epochs=1, lr=3e-3)
    run.resumable_fit(tiny_vit(), train, val, one_epoch, device="cpu", out_dir=tmp_path, progress=False)
    other = get_recipe("scratch", epochs=1, lr=1e-3)
    with pytest.raises(training_state.TrainingStateError) as error:
        run.resumable_fit(tiny_vit(), train, val, other, device="cpu", out_dir=tmp_path, resume=True, seed=5)
    message = str(error.value)
    assert "recipe.lr: saved 0.003, now 0.001" in message and "seed: saved 42, now 5" in message
    assert "recipe.epochs" not in message  # only what differs is named
    assert isinstance(error.value, ValueError)


# ---------------------------------------------------------------------------------------------
# A kill at every single step of a save
# ---------------------------------------------------------------------------------------------


class Kill(BaseException):
    """The process dies here: nothing after it runs, not even clean-up code."""


class KillSwitch:
    """Counts the file operations of a save (write a file, rename, delete) and dies at number ``at``.

    Once dead, every later operation dies too: a killed process cleans nothing up. A file being
    written when the kill comes is left half written under its temporary name.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int):
        self.at, self.count, self.armed, self.dead = at, 0, False, False
        self.operations: list[str] = []
        atomic_write, replace, unlink = files.atomic_write, os.replace, Path.unlink

        def step(name: str) -> None:
            if not self.armed:
                return
            if self.dead or self.count == self.at:
                self.dead = True
                raise Kill(name)
            self.count += 1
            self.operations.append(name)

        def killable_atomic_write(path, write):
            def write_or_die(temporary):
                if self.armed and (self.dead or self.count == self.at):
                    temporary.write_bytes(b"half a fi")  # killed in the middle of writing
                step(f"write {Path(path).name}")
                write(temporary)

            return atomic_write(path, write_or_die)

        def killable_replace(source, target):
            step(f"rename {Path(target).name}")
            return replace(source, target)

        def killable_unlink(path, missing_ok=False):
            step(f"delete {path.name}")
            return unlink(path, missing_ok=missing_ok)

        monkeypatch.setattr(files, "atomic_write", killable_atomic_write)
        monkeypatch.setattr(os, "replace", killable_replace)
        monkeypatch.setattr(Path, "unlink", killable_unlink)
        save = training_state.save_training_state
        self.saves = 0

        def save_and_arm(*args, **kwargs):  # armed during the save of epoch 2 only
            self.saves += 1
            self.armed = self.saves == 2
            try:
                return save(*args, **kwargs)
            finally:
                self.armed = False

        monkeypatch.setattr(training_state, "save_training_state", save_and_arm)


def small_problem(synthetic_loaders):
    """An MLP on the synthetic images: fast enough to train a dozen times."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(), nn.Linear(16, 2))
    return model, *synthetic_loaders()


def test_a_kill_at_any_step_of_a_save_resumes_to_the_uninterrupted_numbers(tmp_path, synthetic_loaders):
    recipe = get_recipe("scratch", epochs=3, lr=1e-4, warmup_epochs=0)
    model, train, val, test = small_problem(synthetic_loaders)
    settings = dict(device="cpu", test_loader=test, seed=7, progress=False)
    straight = loop.fit(model, train, val, recipe, **settings)
    straight_weights = {k: v.clone() for k, v in model.state_dict().items()}
    history = straight["history"]
    assert history[1]["val_accuracy"] > history[0]["val_accuracy"], "epoch 2 must be a new best"

    operations = None
    for at in range(100):
        out = tmp_path / f"killed_at_{at}"
        with pytest.MonkeyPatch.context() as monkeypatch:
            switch = KillSwitch(monkeypatch, at)
            model, train, val, test = small_problem(synthetic_loaders)
            try:
                run.resumable_fit(model, train, val, recipe, out_dir=out, **settings)
            except Kill:
                pass
            else:  # the save had fewer steps than `at`: every step has been killed once
                operations = switch.operations
                break
        trainer = json.loads((out / "training_state" / "trainer.json").read_text())
        assert trainer["epoch"] in (1, 2), at  # the last completed epoch, or the one being saved
        model, train, val, test = small_problem(synthetic_loaders)
        resumed = run.resumable_fit(model, train, val, recipe, out_dir=out, resume=True, **settings)
        assert_same_run(resumed, straight)
        for key, value in straight_weights.items():
            assert torch.equal(model.state_dict()[key], value), (at, key)
    # write + rename for weights, best, optimizer and trainer.json, then 3 deletions of epoch 1's files
    assert operations is not None and len(operations) == 11, operations
    assert operations[6:8] == ["write trainer.json", "rename trainer.json"]
    assert sorted(operations[8:]) == [
        "delete best-0001.safetensors",
        "delete optimizer-0001.pt",
        "delete weights-0001.safetensors",
    ]


# ---------------------------------------------------------------------------------------------
# Nothing is unpickled: a state file that runs code when unpickled is refused, through resume
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["optimizer", "weights", "best"])
def test_a_state_file_that_runs_code_when_unpickled_is_refused_and_never_run(
    tmp_path, kind, synthetic_loaders, plant_code_on_unpickle
):
    recipe = get_recipe("scratch", epochs=1, lr=1e-4, warmup_epochs=0)
    model, train, val, _ = small_problem(synthetic_loaders)
    run.resumable_fit(model, train, val, recipe, device="cpu", out_dir=tmp_path, progress=False)
    folder = tmp_path / "training_state"
    planted = folder / json.loads((folder / "trainer.json").read_text())["files"][kind]
    marker = plant_code_on_unpickle(planted)  # under the very name trainer.json gives that file

    model, train, val, _ = small_problem(synthetic_loaders)
    with pytest.raises(training_state.TrainingStateError) as error:
        run.resumable_fit(
            model, train, val, recipe, device="cpu", out_dir=tmp_path, resume=True, progress=False
        )
    assert not marker.exists(), f"resume ran the code in {planted.name}"
    message = str(error.value)
    assert f"{planted} cannot be read" in message and f"delete {folder}" in message


# ---------------------------------------------------------------------------------------------
# The best epoch before the kill: the resumed run ends with its weights, not the last epoch's
# ---------------------------------------------------------------------------------------------


def flipped(loader: DataLoader) -> DataLoader:
    """The same images with the other label: the better the model learns the training set, the worse
    it does here, so the validation accuracy peaks early and the best epoch is an early one."""
    images, labels = loader.dataset.tensors
    return DataLoader(torch.utils.data.TensorDataset(images, 1 - labels), batch_size=loader.batch_size)


def test_resume_after_the_best_epoch_ends_with_exactly_the_best_weights(tmp_path, synthetic_loaders):
    recipe = get_recipe("scratch", epochs=4, lr=1e-3, warmup_epochs=0)
    settings = dict(device="cpu", seed=7, progress=False)
    model, train, val, test = small_problem(synthetic_loaders)
    straight = run.resumable_fit(
        model, train, flipped(val), recipe, test_loader=test, out_dir=tmp_path / "a", **settings
    )
    straight_weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert straight["best_epoch"] <= 2, "the best epoch must come before the kill in epoch 3"
    # what a run that forgot its best weights would end with: the last epoch's
    last = load_file(tmp_path / "a" / "training_state" / f"weights-{recipe.epochs:04d}.safetensors")
    assert any(not torch.equal(last[k], v) for k, v in straight_weights.items())

    model, train, val, test = small_problem(synthetic_loaders)
    with pytest.raises(KeyboardInterrupt):  # killed in the middle of epoch 3: epochs 1-2 are saved
        run.resumable_fit(
            model, KilledAfter(train, 2 * 4 + 2), flipped(val), recipe, out_dir=tmp_path / "b", **settings
        )
    saved = json.loads((tmp_path / "b" / "training_state" / "trainer.json").read_text())
    assert (saved["epoch"], saved["best_epoch"]) == (2, straight["best_epoch"])

    model, train, val, test = small_problem(synthetic_loaders)
    with torch.no_grad():  # other initial weights: resume replaces them with the saved ones
        for parameter in model.parameters():
            parameter.add_(0.5)
    resumed = run.resumable_fit(
        model, train, flipped(val), recipe, test_loader=test, out_dir=tmp_path / "b", resume=True, **settings
    )
    assert_same_run(resumed, straight)
    assert model.state_dict().keys() == straight_weights.keys()
    for key, value in straight_weights.items():
        assert torch.equal(model.state_dict()[key], value), key


# ---------------------------------------------------------------------------------------------
# Persistent workers cannot be re-seeded: resuming with them warns
# ---------------------------------------------------------------------------------------------


class Workers:
    """A train loader that says how its workers run (``None``: a loader without those attributes)."""

    def __init__(self, loader: DataLoader, persistent: bool | None, workers: int | None):
        self.loader, self.generator, self.batch_size = loader, loader.generator, loader.batch_size
        if persistent is not None:
            self.persistent_workers = persistent
        if workers is not None:
            self.num_workers = workers

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


@pytest.mark.parametrize(
    ("persistent", "workers", "warns"),
    [
        (True, 2, True),
        (True, 1, True),
        (True, 0, False),
        (False, 2, False),
        (None, 2, False),
        (True, None, False),
    ],
)
def test_resuming_with_persistent_workers_warns_and_only_then(
    tmp_path, synthetic_loaders, persistent, workers, warns
):
    recipe = get_recipe("scratch", epochs=1, lr=1e-4, warmup_epochs=0)
    model, train, val, _ = small_problem(synthetic_loaders)
    run.resumable_fit(model, train, val, recipe, device="cpu", out_dir=tmp_path, progress=False)
    model, train, val, _ = small_problem(synthetic_loaders)
    loader = Workers(train, persistent, workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.resumable_fit(
            model, loader, val, recipe, device="cpu", out_dir=tmp_path, resume=True, progress=False
        )
    ours = [w for w in caught if "persistent_workers" in str(w.message)]
    assert len(ours) == int(warns), [str(w.message) for w in caught]
    if warns:
        assert "Use persistent_workers=False for an exact resume" in str(ours[0].message)
