"""pytest hooks for the notebooks, which nbval runs as tests: one test item per code cell.

A cell fails when it writes to stderr anything that ``tools/notebook_stderr.py``'s allow-list does not
explain: a learner reads red output as "something broke". The check reads the outputs nbval has already
collected from the kernel, so no notebook runs twice. It lives here, at the top of the repository,
because pytest consults a conftest.py only for tests in its own folder and below, and the notebooks are
not under tests/ (whose conftest.py holds the unit tests' fixtures).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nbval.plugin import IPyNbCell, NbCellError

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from notebook_stderr import unexpected_stderr  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield  # nbval runs the cell; a cell that raised has failed already and is not checked
    if isinstance(item, IPyNbCell):
        lines = unexpected_stderr(item.test_outputs or [])  # the outputs nbval collected from the kernel
        if lines:
            shown = "\n".join(f"    {line}" for line in lines)
            message = (
                f"it writes to stderr, which a learner sees in red:\n{shown}\n"
                "Fix the cause at its source (tools/notebook_stderr.py lists the few messages the course "
                "means to show there, and why)."
            )
            raise NbCellError(item.cell_num, message, item.cell.source)  # nbval shows it with the cell
    return result
