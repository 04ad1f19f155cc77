"""The Colab set-up cell of every notebook (written by tools/set_repo.py): what it installs, from which
ref, and what a learner sees when pip succeeds or fails. The cell's own text is executed here, with a
stand-in ``google.colab`` module and a stand-in pip."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("**/*.ipynb"))
SETTINGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["fakevit"]
USES_THE_DEMO = re.compile(
    r"^\s*(import gradio|from gradio|from helpers import .*\bdemo|import helpers\.demo)", re.M
)


def setup_source(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    (cell,) = [c for c in notebook.cells if "colab-setup" in c.metadata.get("tags", [])]
    return cell.source


def code_of(path: Path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_installs_the_configured_ref_and_only_the_extras_it_needs(path):
    source = setup_source(path)
    (package,) = re.findall(r'package = "([^"]+)"', source)
    name, url = package.split(" @ ")
    assert url == f"git+https://github.com/{SETTINGS['repo']}@{SETTINGS['ref']}"
    wanted = "fake-vit-course[demo]" if USES_THE_DEMO.search(code_of(path)) else "fake-vit-course"
    assert name == wanted, (
        f"{path.name} imports {'the demo' if '[' in wanted else 'no demo'}: install {wanted}"
    )


def test_only_the_demo_extra_brings_gradio_and_no_extra_colab_installs_brings_playwright():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("gradio") for r in extras["demo"])
    assert not any(r.startswith("playwright") for r in extras["demo"]), "Colab never needs a browser driver"
    assert any(r.startswith("playwright") for r in extras["dev"]), "the browser test still needs it"


class FakePip:
    """Stands in for ``subprocess.run`` in the set-up cell: records the command, answers ``returncode``."""

    def __init__(self, returncode: int):
        self.returncode, self.commands = returncode, []

    def __call__(self, command, **kwargs):
        self.commands.append((command, kwargs))
        return subprocess.CompletedProcess(
            command, self.returncode, "Collecting fake-vit-course\n", "ERROR: boom\n"
        )


def run_setup_cell(source: str, monkeypatch, pip: FakePip, in_colab: bool = True) -> None:
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", pip)
    exec(compile(source, "colab-setup", "exec"), {})


def test_the_setup_cell_is_quiet_when_pip_succeeds(monkeypatch, capsys):
    pip = FakePip(returncode=0)
    run_setup_cell(setup_source(ROOT / "notebooks" / "06_deployment.ipynb"), monkeypatch, pip)
    ((command, kwargs),) = pip.commands
    assert command[1:4] == ["-m", "pip", "install"] and command[4].startswith("fake-vit-course[demo] @ ")
    assert kwargs["capture_output"] is True
    out = capsys.readouterr().out
    assert "Collecting" not in out and "boom" not in out
    assert out.startswith("Installed fake-vit-course[demo]")


def test_the_setup_cell_shows_pips_output_and_stops_when_pip_fails(monkeypatch, capsys):
    pip = FakePip(returncode=1)
    with pytest.raises(RuntimeError, match="pip could not install fake-vit-course @ git"):
        run_setup_cell(setup_source(ROOT / "notebooks" / "01_patch_embeddings.ipynb"), monkeypatch, pip)
    out = capsys.readouterr().out
    assert "Collecting fake-vit-course" in out and "ERROR: boom" in out


def test_the_setup_cell_does_nothing_outside_colab(monkeypatch, capsys):
    pip = FakePip(returncode=0)
    run_setup_cell(setup_source(ROOT / "notebooks" / "01_patch_embeddings.ipynb"), monkeypatch, pip, False)
    assert pip.commands == [] and capsys.readouterr().out == ""


def fork_of_the_repo(tmp_path: Path) -> Path:
    """A copy of set_repo.py, a pyproject.toml and two notebooks (one of them the demo lesson) in tmp_path."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "set_repo.py").write_text((ROOT / "tools" / "set_repo.py").read_text())
    (tmp_path / "pyproject.toml").write_text(
        '[tool.fakevit]\nrepo = "fake-vit/fake-vit-course"\nref = "main"\n'
    )
    (tmp_path / "notebooks").mkdir()
    for name in ("01_x.ipynb", "06_deployment.ipynb"):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [
            nbformat.v4.new_markdown_cell("badge", metadata={"tags": ["colab-badge"]}),
            nbformat.v4.new_code_cell("setup", metadata={"tags": ["colab-setup"]}),
        ]
        nbformat.write(notebook, tmp_path / "notebooks" / name)
    return tmp_path


def set_repo(root: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(root / "tools" / "set_repo.py"), *args]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=60)


def test_set_repo_records_a_release_ref_and_rewrites_badges_and_installs(tmp_path):
    root = fork_of_the_repo(tmp_path)
    done = set_repo(root, "--ref", "v1.0")
    assert done.returncode == 0, done.stderr
    assert 'ref = "v1.0"' in (root / "pyproject.toml").read_text()
    lesson = (root / "notebooks" / "01_x.ipynb").read_text()
    assert "github/fake-vit/fake-vit-course/blob/v1.0/notebooks/01_x.ipynb" in lesson
    assert "fake-vit-course @ git+https://github.com/fake-vit/fake-vit-course@v1.0" in lesson
    demo = (root / "notebooks" / "06_deployment.ipynb").read_text()
    assert "fake-vit-course[demo] @ git+https://github.com/fake-vit/fake-vit-course@v1.0" in demo
    assert set_repo(root, "--check").returncode == 0

    (root / "pyproject.toml").write_text('[tool.fakevit]\nrepo = "fake-vit/fake-vit-course"\nref = "v2.0"\n')
    stale = set_repo(root, "--check")
    assert stale.returncode == 1 and "out of date: notebooks/01_x.ipynb" in stale.stdout


def test_set_repo_refuses_a_ref_that_is_not_one(tmp_path):
    root = fork_of_the_repo(tmp_path)
    done = set_repo(root, "--ref", "main; rm -rf /")
    assert done.returncode != 0 and "--ref must look like a branch, tag or commit" in done.stderr
    assert 'ref = "main"' in (root / "pyproject.toml").read_text()
