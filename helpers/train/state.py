"""The training state ``resumable_fit`` saves every epoch: weights, best weights, optimizer, and last (one
atomic rename) ``trainer.json`` naming them, so a kill loses at most the running epoch. Loads run no code."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from helpers import _files as files
from helpers.train.loop import TrainingState

FORMAT = "fake-vit-training-state/2"
FOLDER = "training_state"  # inside out_dir
TRAINER_FILE = "trainer.json"
STATE_FILE = re.compile(r"^(weights|best|optimizer)-\d{4}\.(safetensors|pt)(\.tmp)?$")


class TrainingStateError(ValueError):
    """A training state that cannot be resumed: other settings, missing or mismatched files."""


def _save_weights(state_dict: dict[str, torch.Tensor], path: Path, epoch: int) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    files.atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"epoch": str(epoch)}))


def save_training_state(
    folder: str | os.PathLike, *, model: nn.Module, state: TrainingState, new_best: bool
) -> None:
    """Save ``model`` and ``state`` after its last epoch; the best weights only when ``new_best``."""
    epoch, best_epoch = len(state.history), state.best_epoch
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = {"weights": f"weights-{epoch:04d}.safetensors", "best": f"best-{best_epoch:04d}.safetensors",
             "optimizer": f"optimizer-{epoch:04d}.pt"}  # fmt: skip
    # 1. This epoch's files, under names no earlier epoch uses.
    _save_weights(model.state_dict(), folder / names["weights"], epoch)
    if new_best:
        _save_weights(state.best_weights, folder / names["best"], best_epoch)
    optimizer_state = {"epoch": epoch, "optimizer": state.optimizer.state_dict(),
                       "scheduler": state.scheduler.state_dict(),
                       "scaler": state.scaler.state_dict()}  # fmt: skip
    files.atomic_write(folder / names["optimizer"], lambda tmp: torch.save(optimizer_state, tmp))
    # 2. The commit: from this rename on, the state is epoch `epoch`.
    trainer = {"format": FORMAT, "epoch": epoch, "best_epoch": best_epoch, "files": names,
               "settings": state.settings, "history": state.history}  # fmt: skip
    files.write_json(folder / TRAINER_FILE, trainer)
    # 3. Whatever trainer.json no longer names: older epochs, and leftovers of an interrupted save.
    for path in folder.iterdir():
        if STATE_FILE.match(path.name) and path.name not in names.values():
            path.unlink(missing_ok=True)


def _differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``["recipe.lr: saved 0.003, now 0.001", ...]``, one entry per field that differs."""
    found = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, prefix=f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key}: saved {old!r}, now {new!r}")
    return found


def _damaged(folder: Path, problem: str) -> TrainingStateError:
    return TrainingStateError(f"{problem}; delete {folder} and start again without resume.")


def _unreadable(path: Path, error: BaseException) -> TrainingStateError:
    return _damaged(path.parent, f"{path} cannot be read ({type(error).__name__}: {error}); it is damaged")


def _load_weights(path: Path, expected_epoch: int) -> dict[str, torch.Tensor]:
    try:
        with safe_open(path, framework="pt") as f:
            epoch = (f.metadata() or {}).get("epoch")
        weights = load_file(path)
    except Exception as error:  # missing, truncated, not safetensors (SafetensorError is no OSError)
        raise _unreadable(path, error) from error
    if epoch != str(expected_epoch):
        raise _damaged(path.parent, f"{path} holds epoch {epoch} but {TRAINER_FILE} expects {expected_epoch}")
    return weights


def load_training_state(folder: str | os.PathLike, settings: dict[str, Any]) -> dict[str, Any]:
    """``trainer.json`` plus ``"weights"``, ``"best_weights"`` and ``"state"``; ``settings`` must equal the
    saved ones (others could not reproduce the run)."""
    folder = Path(folder)
    trainer_path = folder / TRAINER_FILE
    try:
        trainer = json.loads(trainer_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TrainingStateError(
            f"{trainer_path} cannot be read ({error}); start again without resume"
        ) from error
    found = trainer.get("format") if isinstance(trainer, dict) else type(trainer).__name__
    if found != FORMAT:
        raise TrainingStateError(
            f"{trainer_path} has format {found!r}, expected {FORMAT!r}; "
            "start again without resume (or with another output folder)."
        )
    try:
        epoch, best_epoch = int(trainer["epoch"]), int(trainer["best_epoch"])
        names = {key: str(trainer["files"][key]) for key in ("weights", "best", "optimizer")}
        differences = _differences(dict(trainer["settings"]), settings)
        if not 0 < best_epoch <= epoch == len(trainer["history"]):
            raise ValueError(f"epoch {epoch}, best epoch {best_epoch}, {len(trainer['history'])} in history")
        if not all(STATE_FILE.match(name) for name in names.values()):  # a plain name inside `folder`
            raise ValueError(f"unexpected file names {names}")
    except (KeyError, TypeError, ValueError) as error:
        raise _damaged(folder, f"{trainer_path} lacks a field or holds a wrong one ({error!r})") from error
    if differences:
        raise TrainingStateError(
            f"cannot resume from {folder}: the settings differ ({'; '.join(differences)}). Resume with the "
            f"same settings, or start a new run without resume (or with another output folder)."
        )
    try:
        state = torch.load(folder / names["optimizer"], map_location="cpu", weights_only=True)
        state_epoch = state["epoch"]
    except Exception as error:  # missing, truncated, not a torch file, not plain tensors
        raise _unreadable(folder / names["optimizer"], error) from error
    if state_epoch != epoch:
        problem = f"{folder / names['optimizer']} holds epoch {state_epoch} but {TRAINER_FILE} {epoch}"
        raise _damaged(folder, problem)
    trainer["weights"] = _load_weights(folder / names["weights"], epoch)
    trainer["best_weights"] = _load_weights(folder / names["best"], best_epoch)
    trainer["state"] = state
    return trainer


def resume(folder: str | os.PathLike, *, model: nn.Module, state: TrainingState, train_loader: Any) -> int:
    """Load the state saved in ``folder`` into ``model`` and ``state``; return its epoch (0: none)."""
    folder = Path(folder)
    if not (folder / TRAINER_FILE).is_file():
        return 0
    saved = load_training_state(folder, state.settings)
    try:
        model.load_state_dict(saved["weights"])
        state.optimizer.load_state_dict(saved["state"]["optimizer"])
        state.scheduler.load_state_dict(saved["state"]["scheduler"])
        state.scaler.load_state_dict(saved["state"]["scaler"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        problem = f"the training state in {folder} does not fit this model and optimizer ({error})"
        raise _damaged(folder, problem) from error
    state.history, state.best_epoch = saved["history"], saved["best_epoch"]
    state.best_weights = saved["best_weights"]
    if getattr(train_loader, "persistent_workers", False) and getattr(train_loader, "num_workers", 0) > 0:
        warnings.warn(
            "the train loader keeps its worker processes (persistent_workers=True), whose random state "
            "cannot be re-seeded per epoch: the resumed run shuffles in the same order but draws other "
            "augmentations than an uninterrupted run. Use persistent_workers=False for an exact resume.",
            stacklevel=3,
        )
    return saved["epoch"]
