"""Solutions import the course's code instead of retyping their lesson (issue 14, item 6)."""

from __future__ import annotations

from difflib import SequenceMatcher
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
LONGEST_ALLOWED = 9  # identical non-blank lines in a row


def _lines(notebook: nbformat.NotebookNode) -> list[str]:
    """Non-blank source lines of every cell but the Colab set-up, which tools/set_repo.py writes."""
    cells = [c for c in notebook.cells if "colab-setup" not in c.metadata.get("tags", [])]
    return [line.rstrip() for cell in cells for line in cell.source.splitlines() if line.strip()]


def longest_shared_block(lesson: nbformat.NotebookNode, solution: nbformat.NotebookNode) -> list[str]:
    """The longest run of consecutive lines that appears, identical, in both notebooks."""
    a, b = _lines(lesson), _lines(solution)
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return a[match.a : match.a + match.size]


@pytest.mark.parametrize("name", LESSONS)
def test_a_solution_retypes_no_block_of_its_lesson(name):
    lesson = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "notebooks" / "solutions" / f"{name}_solutions.ipynb", as_version=4)
    block = longest_shared_block(lesson, solution)
    assert len(block) <= LONGEST_ALLOWED, (
        f"{len(block)} lines of {name} retyped in its solutions:\n" + "\n".join(block)
    )


def test_every_lesson_is_checked():
    assert len(LESSONS) == 6


def test_the_check_finds_a_retyped_block():
    body = [f"x{i} = {i}" for i in range(12)]
    lesson = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("\n".join(["a = 1", *body]))])
    copied = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("\n\n".join([*body, "b = 2"]))])
    assert longest_shared_block(lesson, copied) == body  # blank lines in between do not hide a copy
    setup = nbformat.v4.new_code_cell("\n".join(body), metadata={"tags": ["colab-setup"]})
    assert longest_shared_block(lesson, nbformat.v4.new_notebook(cells=[setup])) == []
