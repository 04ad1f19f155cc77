"""The lessons' shape as the lesson-editing issue set it: short, hands-on in every lesson, the checks that
guard CI out of the teaching cells, few parameters. Each test reads the committed notebooks."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
MAX_WORDS = 14_000  # prose across lessons 01-06, a third less than wave 2's 19,500
ASSERT_LIKE = re.compile(r"^\s*(assert\b|.*\bassert_close\(|.*\bcourse\.expect\()")


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def source(cell: dict) -> str:
    return "".join(cell["source"])


def prose_words(path: Path) -> int:
    return sum(len(source(c).split()) for c in cells(path) if c["cell_type"] == "markdown")


def test_the_lessons_stay_within_the_prose_budget():
    words = {path.name: prose_words(path) for path in LESSONS}
    assert sum(words.values()) <= MAX_WORDS, f"{sum(words.values())} words of prose > {MAX_WORDS}: {words}"


def test_every_lesson_has_a_your_turn_cell_followed_by_its_check():
    total = 0
    for path in LESSONS:
        nb = cells(path)
        turns = [i for i, c in enumerate(nb) if "your-turn" in tags(c)]
        assert turns, f"{path.name} has no cell tagged your-turn"
        for i in turns:
            following = "".join(source(c) for c in nb[i + 1 : i + 4] if c["cell_type"] == "code")
            assert "check_" in following, f"{path.name}: the your-turn cell {i} is not followed by its check"
        total += len(turns)
    assert total >= 9, f"{total} your-turn cells in all; the course promises at least 9"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_visible_code_cells_hold_at_most_one_assert_like_line(path):
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] != "code" or "check" in tags(cell):
            continue
        lines = [line for line in source(cell).splitlines() if ASSERT_LIKE.match(line)]
        assert len(lines) <= 1, f"{path.name} cell {i}: move these into a cell tagged `check`: {lines}"
        assert "NBVAL_CHECK_OUTPUT" not in source(cell), f"{path.name} cell {i}: tag it nbval-check-output"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_check_cells_open_collapsed_with_a_title(path):
    checks = [c for c in cells(path) if "check" in tags(c)]
    for cell in checks:
        assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, "JupyterLab must collapse it"
        assert cell["metadata"].get("cellView") == "form", "Colab must show it as a form"
        assert source(cell).startswith("# @title Check: "), f"title it: {source(cell)[:80]!r}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_a_parameters_cell_names_at_most_six(path):
    (cell,) = [c for c in cells(path) if "parameters" in tags(c)]
    names = [t.id for s in ast.parse(source(cell)).body if isinstance(s, ast.Assign) for t in s.targets]
    assert len(names) <= 6, f"{path.name}: {len(names)} parameters {names}; fold sizes into course.sizes"


def test_the_prose_budget_check_counts_words_and_would_fail(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["one two\n", "three"]}]}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert prose_words(path) == 3
    assert ASSERT_LIKE.match("torch.testing.assert_close(a, b)") and ASSERT_LIKE.match("  assert x")
    assert not ASSERT_LIKE.match("print('no assert here')")


def test_the_lesson_times_agree_everywhere_and_a_stale_copy_is_caught(tmp_path):
    tool = [sys.executable, "tools/lesson_times.py", "--check"]
    assert subprocess.run(tool, cwd=ROOT).returncode == 0, "run `python tools/lesson_times.py`"
    for part in ("tools/lesson_times.py", "README.md", "docs/workshop.md", "notebooks"):  # a copy to break
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, tmp_path / part)
    lesson = LESSONS[2].relative_to(ROOT)
    (tmp_path / lesson).write_text((ROOT / lesson).read_text().replace("**Time:** about", "**Time:** 9"))
    assert subprocess.run(tool, cwd=tmp_path, capture_output=True).returncode == 1
    subprocess.run(tool[:-1], cwd=tmp_path, check=True, capture_output=True)  # writes the table back
    assert (tmp_path / lesson).read_text() == (ROOT / lesson).read_text()
