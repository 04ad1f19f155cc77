"""`python -m helpers.train`: end to end on tiny image folders, argument checks, several processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
from safetensors.torch import load_file

from helpers.data.datasets import CLASS_NAMES
from helpers.data.toy import make_toy_dataset
from helpers.model import pretrained
from helpers.model.vit import ViT
from helpers.serving.inference import DetectorError, check_unseen, load_predictor
from helpers.train import cli as train
from helpers.train import distributed
from helpers.train.recipes import RECIPES
from helpers.train.trust import split_digest

ROOT = Path(__file__).resolve().parents[1]
RATES = ("accuracy", "precision", "recall", "f1", "auroc")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny_run(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--model",
        "vit_tiny",
        "--recipe",
        "scratch",
        "--image-size",
        "32",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--warmup-epochs",
        "1",
        "--num-workers",
        "0",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
        "--no-progress",
        *extra,
    ]


def check_rates(metrics: dict) -> None:
    for split in ("val", "test"):
        for key in RATES:
            assert 0.0 <= metrics[split][key] <= 1.0, (split, key, metrics[split][key])
    for entry in metrics["history"]:
        assert 0.0 <= entry["train_accuracy"] <= 1.0 and 0.0 <= entry["val_accuracy"] <= 1.0


def test_cli_trains_on_the_toy_set_and_writes_metrics_weights_and_config(tmp_path, capsys):
    toy = make_toy_dataset(tmp_path / "toy", images_per_class=20, image_size=32)
    out = tmp_path / "run"
    assert train.main(tiny_run(toy, out, "--epochs", "2")) == 0
    assert re.search(r"\nauroc +\d\.\d{3} \(95 % CI \d\.\d\d-\d\.\d\d, n = 8\)\n", capsys.readouterr().out)

    assert {p.name for p in out.iterdir()} == {"metrics.json", "detector", "training_state"}
    assert {p.name for p in (out / "detector").iterdir()} == {"model.safetensors", "config.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == list(CLASS_NAMES)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    recipe = metrics["recipe"]
    assert (recipe["name"], recipe["epochs"], recipe["lr"], recipe["warmup_epochs"]) == (
        "scratch",
        2,
        2e-3,
        1,
    )
    assert recipe["label_smoothing"] == RECIPES["scratch"].label_smoothing  # not given: the recipe's
    assert metrics["settings"]["model"] == "vit_tiny" and "lr" not in metrics["settings"]
    assert metrics["val"]["num_samples"] == 8 and metrics["test"]["num_samples"] == 8  # 20% of 20 per class
    assert metrics["train_images_per_second"] > 0 and metrics["seconds"] > 0
    check_rates(metrics)

    predictor = load_predictor(out)  # the exported detector (in out/detector) loads and predicts
    probs = predictor.predict(next((toy / "fake_images").iterdir()))
    assert set(probs) == set(CLASS_NAMES) and sum(probs.values()) == pytest.approx(1.0)
    assert predictor.config["model_name"] == "vit_tiny" and predictor.config["transform"]["crop"] == 32

    # the split, the operating point and the intervals (issue 20)
    split, point = predictor.config["split"], metrics["operating_point"]
    assert (split["root"], split["seed"], split["val_fraction"], len(split["train_files"])) == (
        "toy",
        42,
        0.2,
        24,
    )
    assert split["train_digest"] == split_digest(toy / name for name in split["train_files"])
    assert not set(split["train_files"]) & set(split["test_files"]) and len(split["val_files"]) == 8
    assert predictor.config["threshold"] == point["threshold"] and predictor.config["target_fpr"] == 0.05
    assert predictor.threshold == point["threshold"] and point["n_fake"] + point["n_real"] == 8
    for metric in ("accuracy", "f1", "auroc"):
        interval = metrics["intervals"][metric]
        assert interval["n"] == 8 and interval["low"] <= interval["value"] <= interval["high"]
    with pytest.raises(DetectorError, match=r"^24 evaluation file\(s\) were also training files"):
        check_unseen(predictor.config, [toy / name for name in split["train_files"]])
    check_unseen(predictor.config, [toy / name for name in split["test_files"]])  # disjoint: no error

    # --resume on a finished run trains nothing more and reports the same numbers
    assert train.main(tiny_run(toy, out, "--epochs", "2", "--resume")) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["history"] == metrics["history"] and again["test"] == metrics["test"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "vit_tiny", "--recipe", "finetune"], "only for --model vit_b16"),
        (["--model", "vit_tiny", "--recipe", "linear_probe"], "only for --model vit_b16"),
        (["--image-size", "60"], "multiple of vit_tiny's patch size 8"),
        (["--model", "vit_b16", "--image-size", "100"], "multiple of vit_b16's patch size 16"),
        (["--epochs", "0"], "--epochs: recipe 'scratch': epochs must be an integer >= 1, got 0"),
        (["--epochs", "2", "--warmup-epochs", "3"], "--warmup-epochs: recipe 'scratch': warmup_epochs must"),
        (["--lr", "-1"], "--lr: recipe 'scratch': lr must be > 0"),
        (["--recipe", "tutorial", "--warmup-epochs", "1"], "with schedule='constant'"),
        (["--val-fraction", "0"], "--val-fraction"),
        (["--recipe", "transfer"], "invalid choice: 'transfer'"),
    ],
)
def test_bad_arguments_exit_with_status_2_and_say_why(easy_folder, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        train.parse_args(["--data", str(easy_folder), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_every_recipes_defaults_from_the_recipes_themselves(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, recipe in RECIPES.items():
        for flag, field in (("--lr", "lr"), ("--epochs", "epochs"), ("--weight-decay", "weight_decay")):
            assert f"{name} {getattr(recipe, field)}" in text, (flag, name)


def test_flags_replace_fields_of_the_recipe(easy_folder):
    argv = ["--data", str(easy_folder), "--model", "vit_b16", "--recipe", "finetune", "--lr", "1e-4"]
    recipe = train.parse_args([*argv, "--grad-clip", "0"]).recipe
    assert recipe.to_dict() == {**RECIPES["finetune"].to_dict(), "lr": 1e-4, "grad_clip": None}
    recipe = train.parse_args(["--data", str(easy_folder), "--epochs", "5"]).recipe  # a short run
    assert recipe.epochs == 5 and recipe.warmup_epochs == min(RECIPES["scratch"].warmup_epochs, 5 / 10)


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "make-toy" in err


def test_data_folder_without_classes_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "fake_images").mkdir()
    assert train.main(tiny_run(tmp_path / "photos", tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "photos") in err and "real_images" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_pretrained_recipes_without_weights_fail_clearly_or_go_on_with_random_weights(
    easy_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache

    def offline(url, timeout):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(pretrained, "_check_reachable", offline)
    argv = [
        "--data",
        str(easy_folder),
        "--out",
        str(tmp_path / "probe"),
        "--model",
        "vit_b16",
        "--recipe",
        "linear_probe",
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    assert train.main(argv) == 1
    assert "vit_b_16-c867db91.pth" in capsys.readouterr().err

    assert train.main([*argv, "--allow-random-weights"]) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert metrics["weights"].startswith("RANDOM") and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["recipe"]["name"] == "linear_probe" and not metrics["recipe"]["train_backbone"]
    check_rates(metrics)
    config = json.loads((tmp_path / "probe" / "detector" / "config.json").read_text())
    assert config["vit_config"]["dim"] == 768 and config["transform"]["resize"] == round(32 * 256 / 224)


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_process(easy_folder, tmp_path):
    single = tmp_path / "single"
    assert train.main(tiny_run(easy_folder, single, "--batch-size", "16")) == 0
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "helpers.train",
        *tiny_run(easy_folder, ddp, "--batch-size", "8", "--device", "cpu"),
    ]
    # A session of its own, so that on a timeout the launcher AND its workers are killed: a worker
    # left behind would hold the output pipes open and hang the test run.
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in 240 s:\n{stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]

    one, two = (json.loads((folder / "metrics.json").read_text()) for folder in (single, ddp))
    assert two["world_size"] == 2 and one["world_size"] == 1
    # Both processes together see the whole training set each epoch (8 per process = 16 per step),
    # and the whole validation and test sets are evaluated.
    assert two["test"]["num_samples"] == one["test"]["num_samples"] == 12
    assert two["val"]["num_samples"] == one["val"]["num_samples"] == 12
    check_rates(two)
    assert one["test"]["accuracy"] >= 0.9 and two["test"]["accuracy"] >= 0.9
    assert abs(one["history"][-1]["train_loss"] - two["history"][-1]["train_loss"]) < 0.05
    load_predictor(ddp)  # only process 0 wrote the files, and they are complete


def test_process_0_goes_first_for_the_data_and_for_the_weights(easy_folder, tmp_path, monkeypatch):
    """Under torchrun both fetches go through helpers.train.distributed.rank_zero_first (one process here)."""
    prepared, real = [], distributed.rank_zero_first

    def spy(prepare, **kwargs):
        prepared.append(real(prepare, **kwargs))
        return prepared[-1]

    monkeypatch.setattr(distributed, "rank_zero_first", spy)
    assert train.main(tiny_run(easy_folder, tmp_path / "run", "--epochs", "1")) == 0
    (loaders, (model, origin)) = prepared
    assert loaders[-1] == list(CLASS_NAMES) and isinstance(model, ViT) and origin == "random init"


# ---------------------------------------------------------------------------------------------
# What a GPU user expects (issue 11): --data of a download, --compile, free space, DDP fetches
# ---------------------------------------------------------------------------------------------


def test_data_may_be_the_folder_above_the_classes(easy_folder, tmp_path, capsys):
    """`python -m helpers.data download --out data/fake_or_real` puts the classes into train/."""
    download = tmp_path / "fake_or_real"
    (download / "__MACOSX").mkdir(parents=True)  # junk that extraction may leave, ignored
    (download / "train").symlink_to(easy_folder, target_is_directory=True)
    (download / ".complete").write_text("{}")
    args = train.parse_args(["--data", str(download)])
    assert args.data == download / "train"
    assert f"using {download / 'train'}" in capsys.readouterr().out
    assert train.parse_args(["--data", str(easy_folder)]).data == easy_folder  # the classes: unchanged
    (tmp_path / "two" / "a").mkdir(parents=True)
    (tmp_path / "two" / "b").mkdir()
    assert train.find_class_folder(tmp_path / "two") == tmp_path / "two"  # nothing to descend into


@pytest.mark.slow
def test_compile_trains_the_compiled_model_to_the_same_numbers(easy_folder, tmp_path, monkeypatch):
    """--compile calls ViT.compile (torch.compile in place). Inductor takes minutes on a CPU, so the
    test compiles with the "eager" backend: the graph capture is real, the kernels are PyTorch's
    own, and the run must give exactly the numbers of the uncompiled one."""
    compiled = []
    real_compile = ViT.compile

    def compile_eagerly(self, **options):
        compiled.append(self)
        return real_compile(self, backend="eager")

    monkeypatch.setattr(ViT, "compile", compile_eagerly)
    plain, fast = tmp_path / "plain", tmp_path / "compiled"
    assert train.main(tiny_run(easy_folder, plain, "--epochs", "1")) == 0
    assert train.main(tiny_run(easy_folder, fast, "--epochs", "1", "--compile")) == 0
    assert len(compiled) == 1 and compiled[0]._compiled_call_impl is not None
    one, two = (json.loads((out / "metrics.json").read_text()) for out in (plain, fast))
    assert two["settings"]["compile"] and not one["settings"]["compile"]
    timing = ("seconds", "train_images_per_second")
    assert [{k: v for k, v in h.items() if k not in timing} for h in one["history"]] == [
        {k: v for k, v in h.items() if k not in timing} for h in two["history"]
    ]
    assert (
        load_file(plain / "detector" / "model.safetensors").keys()
        == load_file(fast / "detector" / "model.safetensors").keys()
    )  # the same names: no "_orig_mod." prefix


def test_space_needed_is_what_a_run_writes(easy_folder, tmp_path):
    """The estimate against the bytes a 2-epoch run really leaves: the training state (weights, best
    weights, optimizer) and the detector; the estimate counts the state twice (a save's peak)."""
    out = tmp_path / "run"
    argv = tiny_run(easy_folder, out, "--epochs", "2")
    needed = train.space_needed(train.parse_args(argv))
    assert train.main(argv) == 0
    state = sum(f.stat().st_size for f in (out / "training_state").iterdir())
    detector = sum(f.stat().st_size for f in (out / "detector").iterdir())
    assert 0.95 < needed / (2 * state + detector) < 1.05
    # resuming over a saved state needs only the new epoch's copy
    assert 0.95 < train.space_needed(train.parse_args(argv)) / (state + detector) < 1.05
    # ViT-B/16 fine-tuning, as documented: about 3.1 GB
    args = train.parse_args(["--data", str(easy_folder), "--model", "vit_b16", "--recipe", "finetune"])
    assert abs(train.space_needed(args) / 1e9 - 3.1) < 0.05
