"""What the full-mode rehearsal (``tools/rehearse.py``) checks after each notebook, besides "every cell ran".

Each check takes what the runner observed and returns the problems it found (an empty list when the
check holds), so that the rules read in one place and tests can try each on made-up observations:

- a runtime whose home already holds the dataset must not download ``train.zip`` again;
- with an empty home (no detector yet), lessons 05 and 06 either run through, or stop at once with a
  message that sends the learner to lesson 04, without downloading anything first;
- full mode never makes a detector trained on the toy set (nor presents or packages one);
- a lesson that loads the stand-in ImageNet weights says loudly that they are not the published ones;
- lessons 05 and 06 use lesson 04's detector as it is: its files are the same before and after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

STANDIN_WEIGHTS_ANNOUNCEMENT = "NOT THE PUBLISHED WEIGHTS"  # what helpers.model.pretrained prints
SENDS_TO_LESSON_04 = re.compile(r"\b04\b")  # "run notebook 04 first", "04_fine_tuning.ipynb", ...


@dataclass
class Run:
    """What one notebook did in one fresh runtime."""

    scenario: str
    notebook: str
    seconds: float = 0.0
    failure: str | None = None  # where and why the notebook stopped (cell and error)
    stopped_as_designed: bool = False  # an empty home: stopped at once, pointing to lesson 04
    zip_downloads: int = 0  # GET requests for train.zip that sent bytes
    zip_megabytes: float = 0.0
    problems: list[str] = field(default_factory=list)  # checks that did not hold
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure

    @property
    def ok(self) -> bool:
        return (self.failure is None or self.stopped_as_designed) and not self.problems

    @property
    def status(self) -> str:
        if not self.ok:
            return "FAILED" if self.failure and not self.stopped_as_designed else "CHECK FAILED"
        return "stopped, ok" if self.stopped_as_designed else "ok"


def no_second_download(run: Run, home_had_zip: bool) -> list[str]:
    """Once a runtime with this home fetched train.zip, later runtimes must find the data in the home."""
    if home_had_zip and run.zip_downloads:
        return [f"downloaded train.zip again ({run.zip_megabytes:.1f} MB) although this home had the data"]
    return []


def empty_home_stop(run: Run) -> list[str]:
    """With an empty home: a stop is fine only at once (no download) and with a pointer to lesson 04.

    Marks ``run.stopped_as_designed`` when it is.
    """
    if run.failure is None:
        return []
    problems = []
    if run.zip_downloads:
        problems.append(f"downloaded train.zip ({run.zip_megabytes:.1f} MB) before stopping")
    message = re.sub(r"`[^`]*`", "", run.failure)  # the error, without the cell's first line
    if not SENDS_TO_LESSON_04.search(message):
        problems.append("stopped without a message that sends the learner to lesson 04")
    run.stopped_as_designed = not problems
    return problems


def no_toy_detector(toy_configs: list[Path]) -> list[str]:
    """``toy_configs``: detector configs saying ``"dataset": "toy"`` found after a full-mode run."""
    return [f"full mode made a detector trained on the toy set: {path}" for path in toy_configs]


def standin_weights_announced(output: str) -> list[str]:
    """A lesson that loaded the stand-in ViT-B/16 weights must have said so (``output``: what it printed)."""
    if STANDIN_WEIGHTS_ANNOUNCEMENT in output:
        return []
    return [f"loaded the stand-in ImageNet weights without announcing {STANDIN_WEIGHTS_ANNOUNCEMENT}"]


def detector_reused(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Lesson 04's detector (``{file: sha256}`` before and after a later lesson) is used, not replaced."""
    if not before:
        return ["no detector from lesson 04 in the home to reuse"]
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        return [f"changed lesson 04's detector instead of using it: {', '.join(changed)}"]
    return []
