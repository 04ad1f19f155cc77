"""Every expected failure of the command lines is ONE `error: ...` line on stderr and exit status 1
(runtime) or 2 (usage), never a traceback (issue 13): a full disk, an --out that cannot be written, a
resume with other settings, a damaged training state or detector, bad arguments, missing data.

Each case runs the real command in its own process. The full and read-only disks are small tmpfs
mounts where this machine allows them (root, `mount -t tmpfs`); elsewhere the same failures are made
by patching the disk functions inside that process (the test says which in its output).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from helpers.data.toy import make_toy_dataset
from helpers.train import cli as train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "vit_tiny", "--image-size", "32", "--batch-size", "16", "--num-workers", "0"]
TINY += ["--no-progress", "--lr", "2e-3", "--warmup-epochs", "0"]


def run_command(args: list[str], *, patch: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m helpers.train|data ARGS`` or ``python app/app.py ARGS`` in a new process.

    ``patch``: Python lines run in that process before the command (to fake a full disk where no
    tmpfs can be mounted, or to skip the free-space check so that a run reaches the full disk)."""
    module = {"train": "helpers.train.cli", "data": "helpers.data.sources", "app": "helpers.serving.demo"}[
        args[0]
    ]
    code = f"import sys\n{patch}\nfrom {module} import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", code, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def assert_one_error_line(result: subprocess.CompletedProcess, status: int, *fragments: str) -> str:
    """The process exited with ``status`` after printing exactly one line, ``error: ...``, on stderr."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# Where no tmpfs can be mounted: the third weights file fails as safetensors fails on a full disk.
FAKE_FULL_DISK = """
import helpers.train.state
from safetensors.torch import save_file as real_save_file
calls = []
def save_file(tensors, path, metadata=None):
    calls.append(path)
    if len(calls) > 2:
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    real_save_file(tensors, path, metadata=metadata)
helpers.train.state.save_file = save_file
"""


# ---------------------------------------------------------------------------------------------
# Small disks: a tmpfs mount where the machine allows it
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, read_only: bool = False):
    """Mount a tmpfs of ``size`` on ``folder``; yield True, or False when mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, timeout=30
        )
        ok = mounted.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("data") / "toy", images_per_class=24, image_size=32)


@pytest.fixture(scope="module")
def finished_run(toy, tmp_path_factory) -> Path:
    """A finished 2-epoch run (training state, detector, metrics), trained in this process."""
    out = tmp_path_factory.mktemp("runs") / "done"
    assert train.main(["--data", str(toy), "--out", str(out), "--epochs", "2", *TINY]) == 0
    return out


def copy_of(run: Path, folder: Path) -> Path:
    shutil.copytree(run, folder)
    return folder


# ---------------------------------------------------------------------------------------------
# python -m helpers.train
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_out_folder_that_cannot_be_written_is_refused_before_training(toy, tmp_path):
    locked = tmp_path / "locked"
    with tmpfs(locked, "1m", read_only=True) as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root ignores permissions and no read-only tmpfs can be mounted here")
            locked.chmod(0o555)
        print("read-only folder:", "a read-only tmpfs" if mounted else "chmod 555")
        result = run_command(["train", "--data", str(toy), "--out", str(locked / "run"), *TINY])
    line = assert_one_error_line(result, 2, f"--out {locked / 'run'}", "choose a folder you can write to")
    assert "epoch" not in result.stdout  # refused before the first epoch
    assert "Read-only file system" in line or "Permission denied" in line


@pytest.mark.slow
def test_too_little_free_space_is_refused_before_training(toy, tmp_path):
    small = tmp_path / "small"
    with tmpfs(small, "8m") as mounted:
        patch = (
            ""
            if mounted
            else "import shutil\nshutil.disk_usage = lambda path: shutil._ntuple_diskusage(8e6, 0, 8e6)"
        )
        print("small disk:", "an 8 MB tmpfs" if mounted else "a patched shutil.disk_usage")
        result = run_command(["train", "--data", str(toy), "--out", str(small / "run"), *TINY], patch=patch)
    assert_one_error_line(result, 1, f"--out {small / 'run'}", "GB free", "needs about 0.07 GB")
    assert "epoch" not in result.stdout


@pytest.mark.slow
def test_a_disk_that_fills_up_during_training_is_one_line_and_the_last_epoch_resumes(toy, tmp_path):
    """40 MB holds one epoch's training state of the 32-px vit_tiny (29 MB), not two."""
    disk = tmp_path / "disk"
    skip_check = "import helpers.train.cli\nhelpers.train.cli.space_needed = lambda args: 0\n"
    with tmpfs(disk, "40m") as mounted:
        patch = skip_check
        if not mounted:
            patch += FAKE_FULL_DISK
        print("full disk:", "a 40 MB tmpfs" if mounted else "a patched save_file")
        out = disk / "run"
        result = run_command(
            ["train", "--data", str(toy), "--out", str(out), "--epochs", "3", *TINY], patch=patch
        )
        assert_one_error_line(result, 1, "no space left on the disk holding", str(out), "--resume")
        trainer = json.loads((out / "training_state" / "trainer.json").read_text())
        assert trainer["epoch"] == 1  # the last completed epoch is intact
        assert not list((out / "training_state").glob("*.tmp"))  # no half-written file left behind


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused_naming_the_difference(finished_run, toy, tmp_path):
    run = copy_of(finished_run, tmp_path / "run")
    args = ["train", "--data", str(toy), "--out", str(run), "--epochs", "2", *TINY, "--resume"]
    result = run_command([*args, "--lr", "1e-3"])
    assert_one_error_line(result, 1, "cannot resume from", "recipe.lr: saved 0.002, now 0.001")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["optimizer truncated", "weights of another model"])
def test_a_damaged_training_state_is_one_line(finished_run, toy, tmp_path, damage):
    run = copy_of(finished_run, tmp_path / "run")
    folder = run / "training_state"
    trainer = json.loads((folder / "trainer.json").read_text())
    if damage == "optimizer truncated":
        optimizer = folder / trainer["files"]["optimizer"]
        optimizer.write_bytes(optimizer.read_bytes()[:1000])
    else:  # a valid safetensors file with another shape of head
        weights = load_file(folder / trainer["files"]["weights"])
        weights["head.weight"] = weights["head.weight"][:, :8].contiguous()
        save_file(weights, folder / trainer["files"]["weights"], metadata={"epoch": str(trainer["epoch"])})
    result = run_command(["train", "--data", str(toy), "--out", str(run), "--epochs", "2", *TINY, "--resume"])
    assert_one_error_line(result, 1, str(folder), "start again without resume")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "status", "fragment"),
    [
        (["--epochs", "0"], 2, "--epochs: recipe 'scratch': epochs must be an integer >= 1, got 0"),
        (["--data", "NO_CLASSES"], 1, "real_images"),
    ],
)
def test_a_bad_argument_or_a_folder_without_images_is_one_line(toy, tmp_path, argv, status, fragment):
    (tmp_path / "NO_CLASSES" / "fake_images").mkdir(parents=True)
    argv = [str(tmp_path / a) if a == "NO_CLASSES" else a for a in argv]
    result = run_command(["train", "--data", str(toy), "--out", str(tmp_path / "run"), *TINY, *argv])
    assert_one_error_line(result, status, fragment)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--precision", "fp16", "--device", "cpu"], "needs a CUDA GPU"),
        (["--precision", "half"], "invalid choice: 'half'"),
        (["--recipe", "linear_probe", "--model", "vit_b16", "--compile"], "nothing worth compiling"),
        (["--data", "MISSING"], "no such folder"),
    ],
)
def test_other_usage_errors_are_one_line_with_status_2(toy, tmp_path, capsys, argv, fragment):
    """The same parser as above, in this process (a new process per case would add nothing)."""
    argv = [str(tmp_path / a) if a == "MISSING" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--data", str(toy), *TINY, *argv])
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and fragment in line, line


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage", ["not json", "a list", "without settings", "best epoch after the last", "a path outside"]
)
def test_every_kind_of_damaged_trainer_json_is_a_training_state_error(finished_run, tmp_path, damage):
    """What the subprocess tests above print as one line: each damage raises TrainingStateError."""
    from helpers.train import state as training_state

    run = copy_of(finished_run, tmp_path / "run")
    path = run / "training_state" / "trainer.json"
    trainer = json.loads(path.read_text())
    settings = trainer["settings"]
    if damage == "not json":
        path.write_text("{ not json")
    else:
        if damage == "a list":
            trainer = [trainer]
        elif damage == "without settings":
            del trainer["settings"]
        elif damage == "best epoch after the last":
            trainer["best_epoch"] = trainer["epoch"] + 1
        else:
            trainer["files"]["weights"] = "../../../etc/passwd"
        path.write_text(json.dumps(trainer))
    with pytest.raises(training_state.TrainingStateError, match="start again without resume"):
        training_state.load_training_state(path.parent, settings)


# ---------------------------------------------------------------------------------------------
# python -m helpers.data and python app/app.py
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_helpers_data_failures_are_one_line(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    result = run_command(["data", "make-toy", "--out", str(tmp_path / "a_file" / "toy")])
    assert_one_error_line(result, 1, str(tmp_path / "a_file"))
    # the same command line in this process: a usage error and a bad value
    from helpers.data import sources as data

    with pytest.raises(SystemExit) as exit_info:
        data.main(["cache", "--data", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert data.main(["make-toy", "--out", str(tmp_path / "toy"), "--images-per-class", "0"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), lines
    assert str(tmp_path / "nowhere") in lines[0] and "images_per_class must be >= 1" in lines[1]


@pytest.mark.slow
def test_app_with_a_damaged_detector_is_one_line(finished_run, tmp_path):
    detector = copy_of(finished_run / "detector", tmp_path / "detector")
    weights = detector / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = run_command(["app", "--detector", str(detector), "--no-examples"])
    assert_one_error_line(result, 2, str(weights), "export the detector again")


# ---------------------------------------------------------------------------------------------
# The pieces: a full disk recognised whatever the writer raised
# ---------------------------------------------------------------------------------------------


def test_atomic_write_reports_a_full_disk_as_enospc_naming_the_file(tmp_path):
    import errno

    from helpers import _files as files

    def safetensors_on_a_full_disk(path):
        path.write_bytes(b"half")
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(OSError) as error:
        files.atomic_write(tmp_path / "weights.safetensors", safetensors_on_a_full_disk)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "weights.safetensors")
    assert not list(tmp_path.iterdir())  # the half-written temporary file is gone

    def a_bug(path):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors pass through unchanged
        files.atomic_write(tmp_path / "other.safetensors", a_bug)
