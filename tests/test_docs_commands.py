"""Every command the documentation shows is run (issue 11): README.md, app/README.md,
data/README.md, docs/workshop.md and the command lines' own docstrings.

The commands are found by searching the files for `python -m helpers.…`, `python app/app.py`,
`python tools/toy_figures.py` and `torchrun …`; the search must find exactly the commands listed in RUN
and NOT_RUN, so a command added to the docs fails this test until it is listed (and so run). Each one
runs in this process, in a folder laid out like a checkout, with tiny overrides appended (later flags
win in argparse): 32-px images, one epoch, a 1-block "ViT-B/16" with random weights, a train.zip of 16
images placed by hand instead of the 9 GB download, and a Gradio launch that returns at once.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.data import sources as data
from helpers.data.cache import ImageCache
from helpers.data.datasets import CLASS_NAMES
from helpers.data.toy import make_toy_dataset
from helpers.model import vit
from helpers.serving import demo
from helpers.train import cli as train

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "app/README.md", "data/README.md", "docs/workshop.md"]
DOCSTRINGS = [
    "helpers/train/cli.py",
    "helpers/data/sources.py",
    "helpers/serving/demo.py",
    "tools/toy_figures.py",
]  # each module's docstring
COMMAND = re.compile(
    r"(?:\.venv/bin/)?(python (?:-m helpers\.\w+|app/app\.py|tools/toy_figures\.py)|torchrun)\b[^`\n#]*"
)

# Every documented command that this test runs ...
RUN = [
    "python -m helpers.train --data data/toy --model vit_tiny --recipe scratch --out build/tiny",
    "python -m helpers.train --data data/fake_or_real --model vit_b16 --recipe linear_probe "
    "--out build/probe",
    "python -m helpers.train --data data/fake_or_real --model vit_b16 --recipe finetune --out build/finetune",
    "python -m helpers.train --data path/to/images --model vit_b16 --recipe finetune --epochs 3 "
    "--out runs/mine",
    "python -m helpers.train --out DIR",
    "python -m helpers.train --help",
    "python -m helpers.data make-toy --out data/toy",
    "python -m helpers.data make-toy --out data/toy --images-per-class 200 --image-size 32 --seed 1",
    "python -m helpers.data download --out data/fake_or_real",
    "python -m helpers.data download --out data/fake_or_real --max-side 256",
    "python -m helpers.data download --out data/fake_or_real --max-side 512",
    "python -m helpers.data cache --data data/toy --size 64",
    "python tools/toy_figures.py --data data/toy --out figures",
    "python app/app.py",
    "python app/app.py --detector runs/mine",
    "python app/app.py --detector build/tiny --host 127.0.0.1 --port 7860",
    "python app/app.py --port 7861",
    "python app/app.py --detector DIR",
]
# ... and those it does not, with the reason.
NOT_RUN = {
    "python -m helpers.data": "the program's name",
    "python -m helpers.data make-toy --out data/toy [--images-per-class N --image-size S "
    "--seed K]": "synopsis",
    "python -m helpers.data download --out data/fake_or_real [--max-side 256]": "synopsis",
    "python -m helpers.data cache --data data/toy [--size 64]": "synopsis",
    # tests/test_train_cli.py::test_two_processes_under_torchrun_match_one_process runs two processes
    "torchrun --nproc_per_node=N -m helpers.train ...": "several processes",
    "torchrun --nproc_per_node=4 -m helpers.train ...": "several processes",
}
TINY_TRAINING = ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--num-workers", "0"]
TINY_TRAINING += ["--no-progress", "--allow-random-weights"]
ZIP_IMAGES = 8  # per class, in the stand-in train.zip


def documented_commands() -> set[str]:
    texts = [(ROOT / name).read_text(encoding="utf-8") for name in DOCS]
    texts += [ast.get_docstring(ast.parse((ROOT / name).read_text(encoding="utf-8"))) for name in DOCSTRINGS]
    return {
        " ".join(m.group(0).removeprefix(".venv/bin/").split())
        for text in texts
        for m in COMMAND.finditer(text)
    }


def test_the_list_holds_every_documented_command():
    found, listed = documented_commands(), {*RUN, *NOT_RUN}
    assert found - listed == set(), "documented but not run by this test: add them to RUN"
    assert listed - found == set(), "listed but no longer documented: remove them from RUN or NOT_RUN"


# ---------------------------------------------------------------------------------------------
# A folder laid out like a checkout, with small stand-ins
# ---------------------------------------------------------------------------------------------


def stand_in_zip(path: Path) -> None:
    """train.zip with the real layout (train/fake_images, train/real_images, __MACOSX junk)."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for label in CLASS_NAMES:
            for i in range(ZIP_IMAGES):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
                archive.writestr(f"train/{label}/{i:03d}.png", buffer.getvalue())
        archive.writestr("__MACOSX/train/._000.png", b"junk")


@pytest.fixture
def checkout(tmp_path, monkeypatch, tiny_detector) -> Path:
    """The working directory: a course checkout (pyproject.toml) with data/toy, a placed train.zip,
    detectors where the app commands look, and the stand-ins patched in."""
    (tmp_path / "pyproject.toml").write_text("[tool.fakevit]\n")
    monkeypatch.chdir(tmp_path)
    toy = make_toy_dataset(tmp_path / "data" / "toy", images_per_class=12, image_size=32)
    (tmp_path / "path" / "to").mkdir(parents=True)
    (tmp_path / "path" / "to" / "images").symlink_to(toy, target_is_directory=True)
    (tmp_path / "data" / "fake_or_real").mkdir()
    stand_in_zip(tmp_path / "data" / "fake_or_real" / "train.zip")
    for folder in ("build/detector", "build/tiny", "runs/mine/detector", "DIR"):
        tiny_detector(tmp_path / folder)
    monkeypatch.delenv(demo.DETECTOR_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ImageNet weights: random ones
    monkeypatch.setattr(train.pretrained, "_check_reachable", offline)
    # ViT-B/16 with 1 block of width 64: the same code path, a thousandth of the work
    monkeypatch.setitem(
        vit.PRESETS, "vit_b16", vit.get_config("vit_b16", depth=1, dim=64, heads=2, mlp_dim=128)
    )
    counted = functools.partial(data.download_fake_or_real, expected_count=2 * ZIP_IMAGES)
    monkeypatch.setattr(data, "download_fake_or_real", counted)
    return tmp_path


def offline(url, timeout):
    raise OSError("offline (test)")


class Launched(Exception):
    """Raised by the fake ``gr.Blocks.launch``: the app got as far as serving."""


def run(command: str, monkeypatch) -> dict:
    """Run ``command`` in this process with the tiny overrides; return what it did."""
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "helpers.train"]:
        argv = words[3:]
        if "--help" in argv:
            with pytest.raises(SystemExit) as exit_info:
                train.main(argv)
            return {"status": exit_info.value.code}
        if "--data" not in argv:
            argv = ["--data", "data/toy", *argv]
        if argv[argv.index("--data") + 1] == "data/fake_or_real":  # downloaded first, as the README says
            assert data.main(["download", "--out", "data/fake_or_real"]) == 0
        return {"status": train.main([*argv, *TINY_TRAINING]), "out": Path(argv[argv.index("--out") + 1])}
    if words[:3] == ["python", "-m", "helpers.data"]:
        argv = words[3:]
        if argv[0] == "make-toy":
            argv += ["--images-per-class", "6", "--image-size", "32"]
        return {"status": data.main(argv)}
    if words[:2] == ["python", "tools/toy_figures.py"]:
        tool = [sys.executable, str(ROOT / words[1]), *words[2:]]  # a program, as make runs it
        done = subprocess.run(tool, capture_output=True, text=True, timeout=300)
        return {"status": done.returncode, "stderr": done.stderr}
    assert words[:2] == ["python", "app/app.py"], command
    gr = pytest.importorskip("gradio")
    launches = []

    def launch(self, **options):
        launches.append(options)
        raise Launched

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    with pytest.raises(Launched):
        demo.main([*words[2:], "--no-examples"])
    return {"launch": launches[0]}


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN)
def test_every_documented_command_runs(command, checkout, monkeypatch, capsys):
    result = run(command, monkeypatch)
    if "helpers.train" in command:
        assert result["status"] == 0, capsys.readouterr().err
        if "--help" in command:
            assert "--precision {auto,bf16,fp16,fp32}" in capsys.readouterr().out
        else:
            assert (result["out"] / "detector" / "model.safetensors").is_file()
    elif "helpers.data" in command:
        assert result["status"] == 0, capsys.readouterr().err
        if "download" in command:
            assert (checkout / "data" / "fake_or_real" / "train" / "fake_images").is_dir()
        if "--max-side" in command:
            side = command.split()[-1]
            assert (checkout / "data" / f"fake_or_real_{side}px" / "real_images").is_dir()  # prepared copy
        if "cache" in command:
            assert ImageCache.open(checkout / "data" / "toy").size == 64
    elif "toy_figures" in command:
        assert result["status"] == 0, result["stderr"]
        assert (checkout / "figures" / "toy_spectra.png").is_file()
    else:
        launch = result["launch"]
        assert launch["max_file_size"] == demo.MAX_UPLOAD_BYTES
        if "--port" in command:
            assert launch["server_port"] == int(command.split()[-1])


@pytest.mark.slow
def test_training_on_data_fake_or_real_uses_its_train_folder(checkout, monkeypatch, capsys):
    """The order of the README: download, then train with --data data/fake_or_real."""
    assert run("python -m helpers.data download --out data/fake_or_real", monkeypatch)["status"] == 0
    command = "python -m helpers.train --data data/fake_or_real --model vit_tiny --out build/after_download"
    assert run(command, monkeypatch)["status"] == 0
    assert "using data/fake_or_real/train" in capsys.readouterr().out
