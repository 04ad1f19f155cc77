"""The full-mode rehearsal's runner: the fresh runtime it builds (tools/rehearsal/runtime.py), the
checks it makes after each notebook (tools/rehearsal/checks.py), and tools/rehearse.py as a program.

The rehearsal itself runs in `make test` (tools/rehearse.py); these tests try its parts on made-up
notebooks and observations, in seconds.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from helpers import course

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from rehearsal import checks, runtime  # noqa: E402
from rehearsal.checks import Run  # noqa: E402


def code_cell(source, tags=(), outputs=()):
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": list(outputs)}


ERROR = {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []}


def write_notebook(path: Path, cells: list[dict]) -> Path:
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


# --------------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------------


def test_the_failing_cell_is_numbered_as_in_the_lesson(tmp_path):
    cells = [
        code_cell("papermill's banner", tags=["papermill-error-cell-tag"]),
        code_cell("MODE = 'auto'", tags=["parameters"]),
        code_cell("MODE = 'full'", tags=["injected-parameters"]),
        code_cell("\n# divide\nx = 1 / 0", outputs=[ERROR]),
    ]
    path = write_notebook(tmp_path / "executed.ipynb", cells)
    assert runtime.first_error(path) == "cell 1 (`# divide`): ZeroDivisionError: division by zero"
    cells[-1]["outputs"] = []
    assert runtime.first_error(write_notebook(path, cells)) is None


def test_output_text_collects_what_the_notebook_printed(tmp_path):
    stream = {"output_type": "stream", "name": "stdout", "text": ["NOT THE PUBLISHED ", "WEIGHTS\n"]}
    result = {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {}}
    path = write_notebook(
        tmp_path / "x.ipynb", [code_cell("a", outputs=[stream]), code_cell("b", outputs=[result, ERROR])]
    )
    text = runtime.output_text(path)
    assert (
        "NOT THE PUBLISHED WEIGHTS" in text and "42" in text and "ZeroDivisionError: division by zero" in text
    )


def test_a_sizes_table_must_name_parameters_the_lesson_has():
    lesson = ROOT / "notebooks" / "01_patch_embeddings.ipynb"
    runtime.check_parameters(lesson, {"MODE": "full", "IMAGE_SIZE": 224})
    with pytest.raises(SystemExit, match="NO_SUCH_SIZE"):
        runtime.check_parameters(lesson, {"NO_SUCH_SIZE": 1})


def test_the_runtime_environment_is_fresh_and_points_at_the_standins(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKEVIT_MODE", "small")  # the caller's settings must not leak into the runtime
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = tmp_path / "vit_b_16-c867db91.pth"
    weights.write_bytes(b"w")
    env = runtime.runtime_env(
        tmp_path / "rt",
        home=tmp_path / "home",
        python_path=[tmp_path / "site"],
        hub_url="http://h",
        weights=weights,
    )
    assert "FAKEVIT_MODE" not in env and "HF_HUB_OFFLINE" not in env
    assert env["FAKEVIT_HOME"] == str(tmp_path / "home") and env["PYTHONPATH"] == str(tmp_path / "site")
    assert env["HF_ENDPOINT"] == "http://h" and env["HF_HOME"] == str(tmp_path / "rt" / "hf")
    cached = tmp_path / "rt" / "torch" / "hub" / "checkpoints" / weights.name
    assert cached.read_bytes() == b"w"


def test_the_detector_folder_in_a_home_is_where_helpers_puts_it(tmp_path, monkeypatch):
    monkeypatch.setenv(course.HOME_ENV, str(tmp_path))
    assert course.detector_dir() == tmp_path / runtime.DETECTOR_IN_HOME


def test_toy_markers_and_digests(tmp_path):
    (tmp_path / "a" / "detector").mkdir(parents=True)
    (tmp_path / "a" / "detector" / "config.json").write_text('{"dataset": "toy", "model": "vit_tiny"}')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text('{"dataset": "fake_or_real"}')
    (tmp_path / "b" / "broken" / "config.json").parent.mkdir()
    (tmp_path / "b" / "broken" / "config.json").write_text("[not json")
    assert runtime.marked_as_toy("config.json", tmp_path / "a", tmp_path / "b", tmp_path / "none") == [
        tmp_path / "a" / "detector" / "config.json"
    ]
    before = runtime.digest(tmp_path / "a")
    assert list(before) == ["detector/config.json"]
    (tmp_path / "a" / "detector" / "config.json").write_text("{}")
    assert runtime.digest(tmp_path / "a") != before
    assert runtime.digest(tmp_path / "none") == {}


# --------------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------------


def test_a_second_download_into_a_home_that_has_the_data_is_a_problem():
    run = Run("fresh", "05_evaluation_and_interpretation", zip_downloads=1, zip_megabytes=13.2)
    assert checks.no_second_download(run, home_had_zip=False) == []
    assert "again (13.2 MB)" in checks.no_second_download(run, home_had_zip=True)[0]


@pytest.mark.parametrize(
    ("failure", "downloads", "designed"),
    [
        (None, 0, False),  # ran through (made a quick detector): fine, not a stop
        ("cell 4 (`detector = ...`): FileNotFoundError: no detector: run notebook 04 first", 0, True),
        ("cell 4 (`x`): FileNotFoundError: no detector: run notebook 04 first", 1, False),  # fetched first
        ("cell 9 (`# lesson 04 saved it`): KeyError: 'accuracy'", 0, False),  # "04" only in the code
    ],
)
def test_an_empty_home_may_stop_only_at_once_and_pointing_to_lesson_04(failure, downloads, designed):
    run = Run("empty", "05_evaluation_and_interpretation", failure=failure, zip_downloads=downloads)
    problems = checks.empty_home_stop(run)
    run.problems += problems
    assert run.stopped_as_designed is designed
    assert run.ok is (failure is None or designed)
    if failure and not designed:
        assert problems and run.status == "FAILED"


def test_a_toy_detector_a_silent_standin_and_a_replaced_detector_are_problems(tmp_path):
    assert checks.no_toy_detector([]) == []
    assert "toy set" in checks.no_toy_detector([tmp_path / "config.json"])[0]
    assert checks.standin_weights_announced("... NOT THE PUBLISHED WEIGHTS: ...") == []
    assert checks.standin_weights_announced("loaded ViT-B/16") != []
    same = {"model.safetensors": "aa", "config.json": "bb"}
    assert checks.detector_reused(same, dict(same)) == []
    assert "model.safetensors" in checks.detector_reused(same, same | {"model.safetensors": "cc"})[0]
    assert checks.detector_reused({}, {}) != []


def test_a_run_that_failed_is_not_ok():
    assert Run("fresh", "01", failure="cell 1 (`x`): E: y").status == "FAILED"
    assert Run("fresh", "01").status == "ok"
    assert Run("fresh", "01", problems=["p"]).status == "CHECK FAILED"


# --------------------------------------------------------------------------------------------------
# tools/rehearse.py, as a program
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_rehearsals_sizes_table_matches_every_lessons_parameters():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "rehearse.py"), "--check-sizes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "matches the parameters of 6 lessons" in done.stdout


def test_make_test_runs_every_unit_test_every_notebook_and_the_rehearsal_so_ci_does():
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    for command in ("-m pytest tests", "-m pytest notebooks", "tools/rehearse.py"):
        assert command in dry.stdout, f"`make test` does not run {command!r}:\n{dry.stdout}"
    source = ast.parse((ROOT / "tools" / "rehearse.py").read_text())
    (defaults,) = [ast.literal_eval(node.value) for node in source.body if isinstance(node, ast.Assign)
                   and getattr(node.targets[0], "id", "") == "DEFAULT_SCENARIOS"]  # fmt: skip
    scenarios = set()  # what its rehearse.py lines run between them: every scenario `make rehearse` runs
    for line in dry.stdout.splitlines():
        if "tools/rehearse.py" in line:
            named = [word for before, word in pairwise(line.split()) if before == "--scenario"]
            scenarios |= set(named or defaults)
    assert scenarios >= set(defaults), f"`make test` rehearses only {sorted(scenarios)}"
    assert "rehearse:" in (ROOT / "Makefile").read_text()


# --------------------------------------------------------------------------------------------------
# What tools/gpu_rehearsal.py measures (rehearsal/gpu.py), tried on a CPU
# --------------------------------------------------------------------------------------------------


def test_the_measure_cell_reports_the_lessons_precision_as_json(tmp_path, capsys):
    from rehearsal import gpu

    lesson = write_notebook(tmp_path / "lesson.ipynb", [code_cell("PRECISION = 'bf16'")])
    copy = gpu.with_measure_cell(lesson, tmp_path / "copy.ipynb")
    cells = json.loads(copy.read_text())["cells"]
    assert [c["source"] for c in cells[:-1]] == ["PRECISION = 'bf16'"], "the lesson itself is unchanged"
    namespace = {"PRECISION": "bf16", "DEVICE": "cpu"}
    exec(compile("".join(cells[-1]["source"]), "measure", "exec"), namespace)
    exec(compile("".join(cells[-1]["source"]), "measure", "exec"), {})  # a lesson without PRECISION
    printed = capsys.readouterr().out
    stream = {"output_type": "stream", "name": "stdout", "text": printed}
    executed = write_notebook(tmp_path / "executed.ipynb", [*cells[:-1], code_cell("m", outputs=[stream])])
    measured = gpu.read_measurements(executed)
    assert measured["precision"] == "bf16" and measured["device"] == "cpu"
    assert json.loads(printed.splitlines()[1].split(gpu.REPORT_MARK)[1])["precision"] is None
    assert "max_memory_allocated_mib" in measured and measured["torch"]
    assert gpu.read_measurements(lesson) is None, "a lesson that stopped early has no measurements"


def test_the_slowest_cells_come_from_papermills_durations(tmp_path):
    from rehearsal import gpu

    cells = [code_cell(f"# cell {i}\nx = {i}") for i in range(3)]
    for cell, seconds in zip(cells, (0.5, 7.25, 2.0), strict=True):
        cell["metadata"]["papermill"] = {"duration": seconds}
    injected = code_cell("MODE = 'full'", tags=["injected-parameters"])
    injected["metadata"]["papermill"] = {"duration": 9.0}
    executed = write_notebook(tmp_path / "x.ipynb", [cells[0], injected, *cells[1:]])
    slowest = gpu.slowest_cells(executed, count=2)
    assert slowest == [
        {"cell": 1, "seconds": 7.25, "first_line": "# cell 1"},
        {"cell": 2, "seconds": 2.0, "first_line": "# cell 2"},
    ]


def test_the_gpu_memory_poller_keeps_the_peak_and_needs_no_gpu(tmp_path, monkeypatch):
    from rehearsal import gpu

    readings = tmp_path / "readings"
    readings.write_text("300\n5120\n900\n")
    fake = tmp_path / "bin" / "nvidia-smi"  # prints the next reading each time it is called
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nhead -n 1 "{readings}"\nsed -i 1d "{readings}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with gpu.GpuMemoryPoller(interval=0.01) as poller:
        deadline = time.monotonic() + 10
        while readings.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert poller.peak_mib == 5120.0
    with gpu.GpuMemoryPoller(command="no-such-nvidia-smi") as absent:
        pass
    assert absent.peak_mib is None
