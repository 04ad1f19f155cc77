"""Rehearse full mode as a learner meets it in Colab, offline and on a CPU, in a few minutes.

Every lesson runs headless with ``-p MODE full`` in a FRESH, EMPTY working folder outside the checkout,
with fresh Hugging Face and torch caches, as in a new Colab runtime. What it gets:

- ``helpers`` installed the way the Colab set-up cell installs it: not editable, from a wheel of this
  working tree (``pip wheel --no-deps``, then ``pip install --no-deps --target SITE``), found by the
  kernel through ``PYTHONPATH=SITE``; a smoke notebook first checks that the kernel imports it from SITE;
- ``HF_ENDPOINT``: a local Hugging Face Hub on 127.0.0.1 (``rehearsal/fake_hub.py``) serving a stand-in
  ``train.zip`` with the real layout (``rehearsal/standins.py``), so ``hf_hub_download`` really downloads;
- ``TORCH_HOME``: random ViT-B/16 weights under the published file name (``rehearsal/standins.py``);
- ``FAKEVIT_HOME``: the course home, shared by the runtimes of one scenario.

Sizes shrink only through papermill parameters (``SIZES`` below); no code path exists for the rehearsal.

Scenarios (``--scenario``, default all):
  fresh   every lesson in its own runtime, one shared home
  empty   05 and 06, each in its own runtime with an empty home (no detector yet)
  chain   04, then 05, then 06, one shared home

Checks besides "every cell ran": once a runtime has fetched train.zip into a shared home, later runtimes
must not download it again; with an empty home, a notebook that stops must stop before downloading it;
full mode never makes a detector trained on the toy set.

    python tools/rehearse.py                     # what `make rehearse` runs
    python tools/rehearse.py --scenario chain    # one scenario
    python tools/rehearse.py --keep              # keep the temporary runtimes and homes

Executed notebooks, papermill's logs and summary.json go to build/rehearsal/. Prints each run's wall time,
downloads and failure (cell and error); exits 1 if a notebook failed or a check did not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import papermill
from rehearsal.fake_hub import FakeHub
from rehearsal.standins import (
    PUBLISHED_PREFIX,
    publish_standin_dataset,
    sha256_prefix,
    write_standin_vit_b16_weights,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ZIP_NAME = "train.zip"

# papermill parameters per lesson, on top of MODE=full: the smallest sizes that still run every cell.
SIZES: dict[str, dict] = {
    "01_patch_embeddings": {},
    "02_vit_blocks": {"NUM_IMAGES": 2},
    "03_training_from_scratch": {
        "TUTORIAL_IMAGE_SIZE": 32,
        "TUTORIAL_EPOCHS": 1,
        "IMAGE_SIZE": 64,
        "PATCH_SIZE": 16,
        "EPOCHS": 2,
        "BATCH_SIZE": 16,
    },
    "04_fine_tuning": {"IMAGE_SIZE": 32, "BATCH_SIZE": 8, "PROBE_EPOCHS": 2, "FINETUNE_EPOCHS": 1},
    "05_evaluation_and_interpretation": {
        "IMAGE_SIZE": 64,
        "PATCH_SIZE": 16,
        "EPOCHS": 1,
        "SPECTRUM_SIZE": 128,
    },
    "06_deployment": {"BATCH_SIZES": [1, 4], "LATENCY_REPEATS": 2},
}
LESSONS = list(SIZES)
SCENARIOS = {
    "fresh": ("every lesson in its own runtime, one shared home", LESSONS),
    "empty": ("05 and 06 in runtimes with an empty home", LESSONS[4:]),
    "chain": ("04 -> 05 -> 06 with one shared home", LESSONS[3:]),
}


@dataclass
class Run:
    """What one notebook did in one fresh runtime."""

    scenario: str
    notebook: str
    seconds: float = 0.0
    failure: str | None = None  # where and why the notebook stopped
    zip_downloads: int = 0  # GET requests for train.zip that sent bytes
    zip_megabytes: float = 0.0
    problems: list[str] = field(default_factory=list)  # checks of the rehearsal that did not hold
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.problems


# --------------------------------------------------------------------------------------------------
# Set-up: helpers as Colab installs them, and the stand-ins
# --------------------------------------------------------------------------------------------------


@dataclass
class Setup:
    """What every runtime shares: the installed helpers, the stand-in Hub and weights, the time limit."""

    site: Path  # helpers installed from the wheel
    hub: FakeHub
    weights: Path  # the stand-in vit_b_16-c867db91.pth
    timeout: int  # seconds per notebook


def install_helpers(site: Path, scratch: Path) -> None:
    """Build a wheel of the working tree (tracked and untracked files, not ignored ones) into ``site``."""
    source = scratch / "source"  # a clean copy: an in-tree build could pick up stale files from build/
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
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # --no-build-isolation: build with this environment's setuptools, so no package index is needed.
    wheel_dir = scratch / "wheel"
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheel_dir, source], check=True)
    (wheel,) = wheel_dir.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)


def runtime_env(runtime: Path, home: Path, setup: Setup) -> dict[str, str]:
    """A fresh runtime's environment: its own caches, helpers from the wheel, the stand-in Hub and weights."""
    checkpoints = runtime / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / setup.weights.name).symlink_to(setup.weights)  # as if downloaded in this runtime
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FAKEVIT_", "HF_", "HUGGINGFACE_", "GRADIO_"))
        and key not in ("PYTHONPATH", "TORCH_HOME")
    }
    return inherited | {
        "PYTHONPATH": str(setup.site),
        "HF_ENDPOINT": setup.hub.url,
        "HF_HOME": str(runtime / "hf"),
        "TORCH_HOME": str(runtime / "torch"),
        "FAKEVIT_HOME": str(home),
        "GRADIO_TEMP_DIR": str(runtime / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",  # the demo makes no calls to the internet
        "MPLBACKEND": "Agg",
    }


# --------------------------------------------------------------------------------------------------
# Running one notebook in one runtime
# --------------------------------------------------------------------------------------------------


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Stop at once if the table names a parameter the notebook does not have (papermill would only warn)."""
    unknown = set(parameters) - set(papermill.inspect_notebook(str(notebook)))
    if unknown:
        raise SystemExit(f"{notebook.name} has no parameter(s) {sorted(unknown)}: update SIZES in {__file__}")


def first_error(executed: Path) -> str | None:
    """``"cell N (`first line`): Name: message"`` for the first cell that raised (N as committed)."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError):
        return None
    added = 0  # cells that papermill added: the injected parameters and its red error banners
    for index, cell in enumerate(cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            added += 1
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                line = next((s.strip() for s in "".join(cell["source"]).splitlines() if s.strip()), "")
                return f"cell {index - added} (`{line[:70]}`): {output['ename']}: {output['evalue']}"
    return None


def execute(notebook: Path, out: Path, parameters: dict, cwd: Path, env: dict, timeout: int) -> str | None:
    """Run ``notebook`` with papermill in its own process; None if every cell ran, else where and why not."""
    params_file = out.with_suffix(".parameters.yaml")
    params_file.write_text(json.dumps(parameters), encoding="utf-8")  # JSON is YAML
    command = [sys.executable, "-m", "papermill", notebook, out, "-f", params_file, "--cwd", cwd]
    command += ["--kernel", "python3", "--no-progress-bar", "--execution-timeout", str(timeout)]  # per cell
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


def files_made_from_toy(name: str, *folders: Path) -> list[Path]:
    """Files called ``name`` (JSON) under ``folders`` that say ``"dataset": "toy"``: checkpoint configs
    (``config.json``) of detectors trained on the toy set, or toy dataset markers (``.complete``)."""
    found = []
    for folder in folders:
        for path in folder.rglob(name):
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("dataset") == "toy":
                    found.append(path)
            except (OSError, ValueError, AttributeError):
                continue
    return found


def rehearse_one(run: Run, runtime: Path, home: Path, out_dir: Path, setup: Setup, home_has_zip: bool) -> Run:
    """Execute ``run.notebook`` in the fresh runtime folder ``runtime`` with course home ``home``, then check.

    ``home_has_zip``: an earlier runtime with this home already downloaded train.zip.
    """
    work = runtime / "work"
    work.mkdir(parents=True)
    home.mkdir(parents=True, exist_ok=True)
    notebook = NOTEBOOKS / f"{run.notebook}.ipynb"
    before = len(setup.hub.downloads(ZIP_NAME))
    start = time.perf_counter()
    parameters = {"MODE": "full", **SIZES[run.notebook]}
    env = runtime_env(runtime, home, setup)
    run.failure = execute(notebook, out_dir / notebook.name, parameters, work, env, setup.timeout)
    run.seconds = time.perf_counter() - start
    downloads = setup.hub.downloads(ZIP_NAME)[before:]
    run.zip_downloads = len(downloads)
    run.zip_megabytes = sum(r.body_bytes for r in downloads) / 1e6

    if downloads and home_has_zip:
        run.problems.append(
            f"downloaded {ZIP_NAME} again ({run.zip_megabytes:.1f} MB) after an earlier runtime with this "
            "home had"
        )
    if downloads and run.failure and run.scenario == "empty":  # should stop before fetching anything
        run.problems.append(f"downloaded {ZIP_NAME} ({run.zip_megabytes:.1f} MB) and then stopped")
    for config in files_made_from_toy("config.json", work, home):
        run.problems.append(f"full mode made a detector trained on the toy set: {config}")
    for marker in files_made_from_toy(".complete", work, home):
        run.notes.append(f"made the toy dataset in full mode: {marker.parent}")
    return run


def smoke(scratch: Path, setup: Setup) -> Path:
    """Run a one-cell notebook in a fresh runtime; return where its kernel imported helpers from (SITE)."""
    runtime = scratch / "smoke"
    (runtime / "work").mkdir(parents=True)
    code = "import helpers\nprint('HELPERS_FILE=' + helpers.__file__)"
    cell = {"cell_type": "code", "metadata": {}, "source": code, "outputs": [], "execution_count": None}
    notebook = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (runtime / "smoke.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    env = runtime_env(runtime, runtime / "home", setup)
    failure = execute(
        runtime / "smoke.ipynb", runtime / "out.ipynb", {}, runtime / "work", env, setup.timeout
    )
    if failure:
        raise SystemExit(f"smoke notebook failed: {failure}")
    output = json.loads((runtime / "out.ipynb").read_text(encoding="utf-8"))["cells"][0]["outputs"][0]
    imported = Path("".join(output["text"]).split("HELPERS_FILE=", 1)[1].strip())
    if not imported.is_relative_to(setup.site):
        raise SystemExit(f"the kernel imported helpers from {imported}, not from the wheel in {setup.site}")
    return imported


# --------------------------------------------------------------------------------------------------
# The whole rehearsal
# --------------------------------------------------------------------------------------------------


def print_run(run: Run) -> None:
    status = "ok" if run.ok else "FAILED" if run.failure else "CHECK FAILED"
    print(
        f"  {run.notebook:34s} {status:12s} {run.seconds:6.1f} s   {ZIP_NAME} downloads: {run.zip_downloads}"
    )
    if run.failure:
        print(f"      stopped at {run.failure[:600]}")
    for line in run.problems:
        print(f"      check: {line}")
    for line in run.notes:
        print(f"      note: {line}")
    sys.stdout.flush()


def rehearse_scenario(name: str, scratch: Path, out_dir: Path, setup: Setup) -> list[Run]:
    """Every notebook of scenario ``name``, in order, each in a fresh runtime under ``scratch/name``."""
    description, notebooks = SCENARIOS[name]
    print(f"\n[{name}] {description}", flush=True)
    out_dir.mkdir(parents=True)
    runs, shared_home = [], scratch / name / "home"
    for number, notebook in enumerate(notebooks, start=1):
        runtime = scratch / name / f"{number}-{notebook}"
        home = runtime / "home" if name == "empty" else shared_home
        home_has_zip = home == shared_home and any(run.zip_downloads for run in runs)
        runs.append(rehearse_one(Run(name, notebook), runtime, home, out_dir, setup, home_has_zip))
        print_run(runs[-1])
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="default: all of them")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "rehearsal", help="executed notebooks")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per notebook")
    parser.add_argument("--fakes", type=int, default=16, help="PNG fakes in the stand-in train.zip")
    parser.add_argument("--photos", type=int, default=16, help="JPEG photos in the stand-in train.zip")
    parser.add_argument("--keep", action="store_true", help="keep the temporary runtimes and homes")
    args = parser.parse_args(argv)
    for name in LESSONS:
        check_parameters(NOTEBOOKS / f"{name}.ipynb", {"MODE": "full", **SIZES[name]})

    scratch = Path(tempfile.mkdtemp(prefix="fakevit-rehearsal-")).resolve()
    if scratch.is_relative_to(ROOT):
        raise SystemExit(
            f"the temporary folder {scratch} is inside the checkout {ROOT}; set TMPDIR elsewhere"
        )
    shutil.rmtree(args.out, ignore_errors=True)
    start = time.perf_counter()
    runs: list[Run] = []
    try:
        print(f"rehearsal folder: {scratch}")
        install_helpers(scratch / "site", scratch)
        zip_path = publish_standin_dataset(scratch / "hub", fakes=args.fakes, photos=args.photos)
        weights = write_standin_vit_b16_weights(scratch / "standin-torch")
        print(
            f"stand-ins: {zip_path.name} with {args.fakes} fakes + {args.photos} photos "
            f"({zip_path.stat().st_size / 1e6:.1f} MB); {weights.name} with sha256 "
            f"{sha256_prefix(weights)}..., not the published {PUBLISHED_PREFIX}... "
            f"(set-up with the wheel: {time.perf_counter() - start:.0f} s)"
        )
        with FakeHub(scratch / "hub") as hub:
            setup = Setup(scratch / "site", hub, weights, args.timeout)
            print(f"stand-in Hub: {hub.url}\nsmoke: the kernel imports {smoke(scratch, setup)}")
            for name in args.scenario or list(SCENARIOS):
                runs += rehearse_scenario(name, scratch, args.out / name, setup)
    finally:
        if args.keep:
            print(f"\nkept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    total = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"seconds": total, "runs": [asdict(run) for run in runs]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    failed = [run for run in runs if not run.ok]
    print(
        f"\n{len(runs) - len(failed)} of {len(runs)} runs passed in {total:.0f} s; "
        f"executed notebooks in {args.out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
