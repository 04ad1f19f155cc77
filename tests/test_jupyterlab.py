"""What a learner sees in JupyterLab: `make lab` serves the course's kernel and the widget extension, and
no notebook writes to stderr what the course did not mean to say.

The stderr check has two parts, both tested here as programs: tools/notebook_stderr.py (the allow-list,
run on executed notebooks) and the repository's conftest.py hook that applies it to every cell nbval runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "fake-vit"  # as the Makefile's KERNEL
TQDM_WARNING = (
    "/x/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter and "
    "ipywidgets. See https://ipywidgets.readthedocs.io/en/stable/user_install.html\n"
    "  from .autonotebook import tqdm as notebook_tqdm\n"
)


def executed_notebook(path: Path, *cells: list[dict]) -> Path:
    """Write a notebook whose code cells have the given outputs, as if papermill had run it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f"cell_{i} = {i}", outputs=[nbformat.from_dict(o) for o in outputs])
        for i, outputs in enumerate(cells)
    ]
    nbformat.write(nb, path)
    return path


def stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def check_stderr(*paths: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "tools" / "notebook_stderr.py"), *map(str, paths)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# tools/notebook_stderr.py on executed notebooks
# ---------------------------------------------------------------------------------------------


def test_stdout_and_widget_bars_are_not_stderr(tmp_path):
    widget = {
        "output_type": "display_data",
        "data": {"text/plain": "epoch 1/1: 100%", "application/vnd.jupyter.widget-view+json": {}},
        "metadata": {},
    }
    path = executed_notebook(tmp_path / "clean.ipynb", [stream("stdout", "SMALL MODE\n"), widget], [])
    result = check_stderr(path)
    assert result.returncode == 0, result.stdout
    assert "no unexpected stderr in 1 notebook" in result.stdout


def test_a_library_warning_and_a_text_progress_bar_are_reported_by_cell(tmp_path):
    bar = "\repoch 1/1:   0%|          | 0/2\repoch 1/1:  50%|#####     | 1/2\r                    \r"
    path = executed_notebook(
        tmp_path / "red.ipynb",
        [stream("stdout", "fine\n")],
        [stream("stderr", TQDM_WARNING)],
        [stream("stdout", "training\n"), stream("stderr", bar)],
    )
    result = check_stderr(path)
    assert result.returncode == 1
    assert "Cell 0" not in result.stdout
    assert "red.ipynb Cell 1 (`cell_1 = 1`)" in result.stdout
    assert "TqdmWarning: IProgress not found" in result.stdout
    assert "red.ipynb Cell 2" in result.stdout and "epoch 1/1:  50%" in result.stdout
    assert "2 cell(s) write to stderr" in result.stdout


def test_blank_and_rich_stderr_are_reported_too(tmp_path):
    rich = {"output_type": "display_data", "data": {"application/vnd.jupyter.stderr": "shown in red"}}
    rich["metadata"] = {}
    path = executed_notebook(tmp_path / "quiet.ipynb", [stream("stderr", "\r          \r")], [rich])
    result = check_stderr(path)
    assert result.returncode == 1
    assert "Cell 0" in result.stdout and "blank stderr output" in result.stdout
    assert "Cell 1" in result.stdout and "shown in red" in result.stdout


def test_the_skipped_files_warning_is_allowed_but_not_what_follows_it(tmp_path, image_folder):
    """The allow-list's one entry, against the warning helpers.data.datasets really writes."""
    import warnings

    from helpers.data import datasets

    root = image_folder(tmp_path / "images", {"fake_images": 2, "real_images": 2})
    (root / "real_images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datasets.find_images(root)
    (warning,) = caught
    # as the kernel shows it: the file of the calling cell, the message, the calling line
    shown = warnings.formatwarning(warning.message, warning.category, "/tmp/ipykernel_1/2.py", 3, "x = 1")
    assert "broken.png" in shown
    resizing = (
        "/x/helpers/data/fake_or_real.py:224: UserWarning: Skipped 1 undecodable file(s):\n"
        "  a.jpg: truncated\n"
    )
    allowed = executed_notebook(
        tmp_path / "allowed.ipynb", [stream("stderr", shown)], [stream("stderr", resizing)]
    )
    assert check_stderr(allowed).returncode == 0, check_stderr(allowed).stdout
    stray = executed_notebook(tmp_path / "stray.ipynb", [stream("stderr", shown + TQDM_WARNING)])
    result = check_stderr(stray)
    assert result.returncode == 1 and "TqdmWarning" in result.stdout and "broken.png" not in result.stdout


@pytest.mark.slow
def test_make_run_lists_stray_stderr_and_signs_what_it_executed(tmp_path):
    from nbformat.sign import NotebookNotary

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell('MODE = "auto"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('import sys\nprint("a stray message", file=sys.stderr)'),
    ]
    nbformat.write(nb, tmp_path / "red.ipynb")
    command = [sys.executable, str(ROOT / "tools" / "run_notebooks.py"), str(tmp_path / "red.ipynb")]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]  # reported, not fatal: `make test` fails on it
    assert "unexpected stderr: red.ipynb Cell 2" in result.stdout and "a stray message" in result.stdout
    assert "WARNING" not in result.stderr, result.stderr  # e.g. ipykernel's on unencrypted sockets
    # trusted, so JupyterLab renders its outputs (widget progress bars) rather than plain-text stand-ins
    assert NotebookNotary().check_signature(nbformat.read(tmp_path / "out" / "red.ipynb", as_version=4))


# ---------------------------------------------------------------------------------------------
# The conftest.py hook: nbval fails a cell that writes to stderr
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_nbval_fails_exactly_the_cells_that_write_to_stderr():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell('print("SMALL MODE: announced on stdout")'),
        nbformat.v4.new_code_cell('import sys\nprint("a stray message", file=sys.stderr)'),
        nbformat.v4.new_code_cell('import warnings\nwarnings.warn("an unhandled library warning")'),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    # Inside the checkout, so that pytest loads the repository's conftest.py as it does for notebooks/.
    (ROOT / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as folder:
        path = Path(folder) / "stderr.ipynb"
        nbformat.write(nb, path)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(path.relative_to(ROOT))]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "2 failed, 2 passed" in result.stdout, result.stdout[-3000:]
    summary = result.stdout.split("short test summary info")[-1]
    assert "stderr.ipynb::Cell 1" in summary and "stderr.ipynb::Cell 2" in summary
    assert "a stray message" in result.stdout and "UserWarning: an unhandled library warning" in result.stdout
    assert "writes to stderr" in result.stdout


# ---------------------------------------------------------------------------------------------
# make lab
# ---------------------------------------------------------------------------------------------


def registered_kernel() -> Path:
    """The course's kernel spec in the environment running the tests; fails when it is missing."""
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    if not spec.exists():
        pytest.fail(f"the {KERNEL} kernel is not registered in {sys.prefix}: `make setup` registers it")
    return spec


@pytest.mark.slow
def test_the_course_kernel_runs_this_environment_with_widget_progress_bars():
    from jupyter_client.manager import start_new_kernel

    registered_kernel()
    code = (
        "import sys, helpers, tqdm.auto, tqdm.notebook\n"
        "print(sys.prefix, issubclass(tqdm.auto.tqdm, tqdm.notebook.tqdm))"
    )
    manager, client = start_new_kernel(kernel_name=KERNEL, startup_timeout=120)
    try:
        lines = []
        reply = client.execute_interactive(
            code, timeout=120, output_hook=lambda msg: lines.append(msg["content"].get("text", ""))
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    # tqdm.auto picks the widget bar (tqdm.notebook) only when ipywidgets is installed, else text on stderr
    assert "".join(lines).split() == [sys.prefix, "True"]


def test_a_notebook_saved_from_make_lab_is_cleaned_back_to_the_kernel_colab_knows(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "FaKe-ViT course", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    clean = [sys.executable, str(ROOT / "tools" / "clean_notebooks.py")]
    assert subprocess.run([*clean, "--check", str(path)], capture_output=True, timeout=60).returncode == 1
    assert subprocess.run([*clean, str(path)], capture_output=True, timeout=60).returncode == 0
    assert nbformat.read(path, as_version=4).metadata.kernelspec.name == "python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.mark.slow
def test_make_lab_offers_only_the_course_kernel_and_renders_widgets():
    registered_kernel()
    venv = Path(sys.prefix)  # the environment `make setup` made (.venv), running this test
    port, token = free_port(), "fakevit-test-token"
    lab_args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    if os.geteuid() == 0:  # CI's container runs as root, which JupyterLab refuses unless told
        lab_args += " --allow-root"
    # The lab recipe as `make lab` runs it, with this environment as .venv and its set-up taken as done.
    command = ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.setup-done", "lab"]
    server = subprocess.Popen(
        [*command, f"LAB_ARGS={lab_args}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the server it starts form one group, stopped together below
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, body = get(f"{base}/api/kernelspecs", token)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, f"`make lab` stopped:\n{server.stdout.read()[-3000:]}"
                assert time.monotonic() < deadline, "JupyterLab did not answer within 120 s"
                time.sleep(1)
        specs = json.loads(body)
        assert status == 200 and specs["default"] == KERNEL
        assert set(specs["kernelspecs"]) == {KERNEL}, "a learner must not be able to pick another kernel"
        spec = specs["kernelspecs"][KERNEL]["spec"]
        assert spec["display_name"] == "FaKe-ViT course (.venv)" and spec["language"] == "python"
        assert spec["argv"][0].startswith(str(venv)), f"the kernel must run {venv}'s Python: {spec['argv']}"

        status, page = get(f"{base}/lab/tree/notebooks", token)
        assert status == 200 and "@jupyter-widgets/jupyterlab-manager" in page, (
            "JupyterLab lacks the widget extension (jupyterlab_widgets): tqdm bars would not render"
        )
        status, listing = get(f"{base}/api/contents/notebooks", token)
        names = {item["name"] for item in json.loads(listing)["content"]}
        assert "01_patch_embeddings.ipynb" in names, "JupyterLab must serve the checkout"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
