"""A fresh runtime for one notebook, as Colab gives each notebook its own: an empty working folder
outside the checkout, its own Hugging Face and torch caches, ``helpers`` installed from a wheel (not
the checkout), and papermill to run the notebook headless.

Used by ``tools/rehearse.py`` (the CPU rehearsal in ``make test``) and ``tools/gpu_rehearsal.py`` (one
run on a GPU that records timings).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout
DETECTOR_IN_HOME = Path("build") / "detector"  # helpers.course.detector_dir() under $FAKEVIT_HOME
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def build_wheel(out_dir: Path, scratch: Path) -> Path:
    """A wheel of the working tree (tracked and untracked files, not ignored ones) in ``out_dir``.

    The files are copied first, so that nothing stale in the checkout's ``build/`` ends up in it.
    """
    source = scratch / "source"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a deleted but still tracked file is skipped
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # --no-build-isolation: build with this environment's setuptools, so no package index is needed.
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", out_dir, source], check=True)
    (wheel,) = out_dir.glob("fake_vit_course-*.whl")
    return wheel


def install_wheel(wheel: Path, site: Path) -> Path:
    """Install ``wheel`` (without its dependencies) into the folder ``site``, as pip does in Colab."""
    subprocess.run([*PIP, "install", "--no-deps", "--target", site, wheel], check=True)
    return site


def runtime_env(
    runtime: Path, *, home: Path, python_path: list[Path], hub_url: str, weights: Path | None
) -> dict[str, str]:
    """The environment of a fresh runtime in the folder ``runtime``.

    Its own caches (``HF_HOME``, ``TORCH_HOME`` under ``runtime``), ``helpers`` from ``python_path``,
    Hugging Face downloads from ``hub_url``, ``weights`` linked into its torch cache as if downloaded
    there, and ``FAKEVIT_HOME=home``. Nothing else of the caller's ``FAKEVIT_``/``HF_`` settings leaks in.
    """
    checkpoints = runtime / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    if weights is not None:  # and every other stand-in beside it (lesson 04's ImageNet CNN)
        for standin in sorted(weights.parent.glob("*.pth")):
            (checkpoints / standin.name).symlink_to(standin)
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FAKEVIT_", "HF_", "HUGGINGFACE_", "GRADIO_"))
        and key not in ("PYTHONPATH", "TORCH_HOME", "MPLBACKEND")
    }
    return inherited | {
        "PYTHONPATH": os.pathsep.join(map(str, python_path)),
        "HF_ENDPOINT": hub_url,
        "HF_HOME": str(runtime / "hf"),
        "TORCH_HOME": str(runtime / "torch"),
        "FAKEVIT_HOME": str(home),
        "GRADIO_TEMP_DIR": str(runtime / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",  # the demo makes no calls to the internet
        "MPLBACKEND": "Agg",
    }


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Stop at once if ``parameters`` names one the notebook does not have (papermill would only warn)."""
    import papermill  # imported here: the GPU script installs it first

    unknown = set(parameters) - set(papermill.inspect_notebook(str(notebook)))
    if unknown:
        raise SystemExit(f"{notebook.name} has no parameter(s) {sorted(unknown)}: update the sizes table")


# papermill's command line, with run_notebooks.kernel_config(): no kernel warns of plain-TCP sockets
PAPERMILL = (
    "import json, logging, sys; sys.path.insert(0, sys.argv[6]); import papermill, run_notebooks; "
    "logging.basicConfig(level=logging.INFO, format='%(message)s'); "
    "notebook, out, params, cwd, timeout = sys.argv[1:6]; parameters = json.loads(open(params).read()); "
    "papermill.execute_notebook(notebook, out, parameters, cwd=cwd, kernel_name='python3', "
    "progress_bar=False, execution_timeout=int(timeout), **run_notebooks.kernel_config())"
)


def execute(notebook: Path, out: Path, parameters: dict, cwd: Path, env: dict, timeout: int) -> str | None:
    """Run ``notebook`` with papermill in its own process; None if every cell ran, else where it stopped."""
    out.parent.mkdir(parents=True, exist_ok=True)
    params_file = out.with_suffix(".parameters.yaml")
    params_file.write_text(json.dumps(parameters), encoding="utf-8")  # JSON is YAML
    command = [sys.executable, "-c", PAPERMILL, notebook, out, params_file, cwd, str(timeout), ROOT / "tools"]
    log = out.with_suffix(".log")
    try:
        with open(log, "w", encoding="utf-8") as stream:
            done = subprocess.run(command, env=env, stdout=stream, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s (see {log})"
    if done.returncode == 0:
        return None
    last = log.read_text(encoding="utf-8").strip().splitlines()[-1:] or ["no output"]
    return first_error(out) or f"papermill exited with {done.returncode}: {last[0]} (see {log})"


def _cells(executed: Path) -> list[dict]:
    try:
        return json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return []


def first_error(executed: Path) -> str | None:
    """``"cell N (`first line`): Name: message"`` for the first cell that raised (N as committed)."""
    added = 0  # cells that papermill added: the injected parameters and its red error banners
    for index, cell in enumerate(_cells(executed)):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            added += 1
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                line = next((s.strip() for s in "".join(cell["source"]).splitlines() if s.strip()), "")
                return f"cell {index - added} (`{line[:70]}`): {output['ename']}: {output['evalue']}"
    return None


def output_text(executed: Path) -> str:
    """Everything the executed notebook printed (streams, text results, error messages), in order."""
    parts = []
    for cell in _cells(executed):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append("".join(output.get("text", "")))
            elif output.get("output_type") == "error":
                parts.append(f"{output.get('ename')}: {output.get('evalue')}")
            else:
                parts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def marked_as_toy(name: str, *folders: Path) -> list[Path]:
    """Files called ``name`` (JSON) under ``folders`` that say ``"dataset": "toy"``: the ``config.json``
    of a detector trained on the toy set, or the ``.complete`` marker of a toy dataset."""
    found = []
    for folder in folders:
        for path in sorted(folder.rglob(name)) if folder.is_dir() else []:
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("dataset") == "toy":
                    found.append(path)
            except (OSError, ValueError, AttributeError):
                continue
    return found


def digest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file below ``folder`` (empty if there is no folder)."""
    if not folder.is_dir():
        return {}
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
