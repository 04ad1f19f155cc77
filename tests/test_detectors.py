"""helpers.lessons.detectors: lessons 05 and 06 find a detector before touching data, or make one and say
so."""

from __future__ import annotations

import json

import pytest

from helpers import course
from helpers.data import datasets, loaders, transforms
from helpers.data import sources as data
from helpers.data.datasets import CLASS_NAMES
from helpers.lessons import detectors
from helpers.model import pretrained
from helpers.serving import inference
from helpers.train import trust


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A course whose detector folders live under ``tmp_path/build``; fetching data is an error."""
    monkeypatch.setenv(course.HOME_ENV, str(tmp_path))

    def no_data(name, *args, **kwargs):
        raise AssertionError(f"get_dataset({name!r}) was called")

    monkeypatch.setattr(data, "get_dataset", no_data)
    return tmp_path / "build"


def _set_config(folder, **changes):
    path = folder / inference.CONFIG_FILE
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, **changes}))


def test_read_config_needs_both_files_and_valid_json(tmp_path, tiny_detector):
    assert detectors.read_config(tmp_path / "nothing") is None
    _, folder = tiny_detector(tmp_path / "det")
    assert detectors.read_config(folder)["model_name"] == "vit_tiny"
    (folder / inference.CONFIG_FILE).write_text("{not json")
    assert detectors.read_config(folder) is None
    _, other = tiny_detector(tmp_path / "other")
    (other / inference.WEIGHTS_FILE).unlink()
    assert detectors.read_config(other) is None


@pytest.mark.parametrize(
    ("config", "small"),
    [
        ({"mode": "small", "dataset": "toy"}, True),
        ({"mode": "full", "dataset": "toy"}, True),
        ({"mode": "small", "dataset": "fake_or_real"}, True),
        ({"mode": "full", "dataset": "fake_or_real"}, False),
        ({"recipe": "finetune"}, False),  # the command line's detector on the user's own images
    ],
)
def test_small_mode_detectors_are_never_published(config, small):
    assert detectors.is_small_mode(config) is small
    if small:
        with pytest.raises(inference.DetectorError, match="small-mode detector"):
            detectors.check_publishable(config, "build/detector")
    else:
        detectors.check_publishable(config, "build/detector")


def test_describe_names_the_recipe_and_random_weights():
    text = detectors.describe({"model_name": "vit_b16", "method": "finetune", "dataset": "toy"})
    assert text == "vit_b16 (finetune, toy data)"
    assert "RANDOM" in detectors.describe({"model_name": "vit_b16", "imagenet_weights": False})
    assert "scratch" in detectors.describe({"model_name": "vit_tiny", "recipe": {"name": "scratch"}})


def test_rebuild_split_gives_the_split_the_training_loaders_used(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", {"fake_images": 23, "real_images": 17})
    train, val, test, _ = loaders.create_dataloaders(root, lambda x: x, seed=7, num_workers=0)
    config = {"split_seed": 7, "class_names": list(CLASS_NAMES)}
    rebuilt = detectors.rebuild_split(root, config)
    assert [list(split) for split in rebuilt] == [
        list(loader.dataset.samples) for loader in (train, val, test)
    ]
    assert detectors.rebuild_split(root, {**config, "split_seed": 8})[2] != rebuilt[2]
    with pytest.raises(inference.DetectorError, match="classes"):
        detectors.rebuild_split(root, {**config, "class_names": ["a", "b"]})


def test_full_mode_uses_the_saved_detector_without_touching_data(home, tiny_detector, capsys):
    _, folder = tiny_detector(home / "detector")
    _set_config(folder, mode="full", dataset="fake_or_real", method="finetune")
    found = detectors.find_or_make("finetuned", mode="full", dataset="fake_or_real", device="cpu")
    assert found == folder
    assert "vit_tiny (finetune, fake_or_real data)" in capsys.readouterr().out


def test_full_mode_stops_at_a_small_mode_detector_before_touching_data(home, tiny_detector):
    _, folder = tiny_detector(home / "detector")
    _set_config(folder, mode="small", dataset="toy")
    with pytest.raises(inference.DetectorError, match="small mode.*04_fine_tuning"):
        detectors.find_or_make("finetuned", mode="full", dataset="fake_or_real", device="cpu")
    # small mode takes it as it is (when it records its split)
    _set_config(folder, split={"train_files": []})
    assert detectors.find_or_make("finetuned", mode="small", dataset="toy", device="cpu") == folder


def test_full_mode_without_a_detector_makes_a_linear_probe_and_says_so(
    home, monkeypatch, tiny_vit, easy_folder, capsys
):
    requested = []
    monkeypatch.setattr(data, "get_dataset", lambda name: requested.append(name) or easy_folder)
    backbone = tiny_vit(image_size=32)
    backbone.reset_head(2)
    sizes = []
    monkeypatch.setattr(
        pretrained,
        "load_pretrained_vit_b16",
        lambda num_classes, image_size: sizes.append(image_size) or backbone,
    )
    before = {k: v.clone() for k, v in backbone.state_dict().items()}

    folder = detectors.find_or_make(
        "finetuned", mode="full", dataset="fake_or_real", device="cpu", image_size=32
    )
    assert folder == course.detector_dir() and requested == ["fake_or_real"] and sizes == [32]
    assert "NO FINE-TUNED DETECTOR" in capsys.readouterr().out
    config = detectors.read_config(folder)
    assert config["method"] == "linear_probe" and config["mode"] == "full" and "made_by" in config
    assert config["transform"] == transforms.eval_transform_spec(32, pretrained=True)
    assert not detectors.is_small_mode(config)
    # a probe: only the head learned
    after = inference.load_predictor(folder).model.state_dict()
    changed = {k for k in after if not after[k].equal(before[k])}
    assert changed == {"head.weight", "head.bias"}


def test_small_mode_without_a_detector_falls_back_to_the_tiny_vit(home, monkeypatch, capsys):
    calls = []

    def fake_training(data_root, out_dir, **settings):
        calls.append(settings)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.safetensors").write_bytes(b"")
        config = {"dataset": "toy", "split_seed": 3, "vit_config": {"image_size": 16, "patch_size": 4}}
        config["split"] = {"train_files": []}
        (out_dir / "config.json").write_text(json.dumps(config))
        return {"seconds": 1.0, "test": {"accuracy": 0.5}}

    monkeypatch.setattr(data, "get_dataset", lambda name: home / name)
    monkeypatch.setattr(detectors, "train_detector", lambda method, *args, **kw: fake_training(*args, **kw))
    settings = dict(mode="small", dataset="toy", device="cpu", seed=3, image_size=16, patch_size=4)
    folder = detectors.find_or_make("finetuned", **settings)
    assert folder == detectors.scratch_detector_dir() == home / "scratch_detector"
    assert "using notebook 03's tiny ViT" in capsys.readouterr().out and len(calls) == 1
    # a detector from notebook 04 without a recorded split: small mode takes the tiny ViT instead
    _set_config(folder, split_seed=3)  # (any config would do)
    (home / "detector").mkdir()
    for name in (inference.CONFIG_FILE, inference.WEIGHTS_FILE):
        (home / "detector" / name).write_bytes((folder / name).read_bytes().replace(b'"split"', b'"old"'))
    assert detectors.find_or_make("finetuned", **settings) == folder and len(calls) == 1
    assert "records no training split" in capsys.readouterr().out
    # the second time it is reused; other settings train again
    assert detectors.find_or_make("scratch", **settings) == folder and len(calls) == 1
    detectors.find_or_make("scratch", **{**settings, "patch_size": 8})
    assert len(calls) == 2 and calls[-1]["patch_size"] == 8


def test_train_detector_saves_a_detector_that_loads_and_refuses_its_training_images(
    tmp_path, image_folder, one_thread
):
    root = image_folder(tmp_path / "data", dict.fromkeys(CLASS_NAMES, 10), size=(16, 16))
    result = detectors.train_detector(
        "scratch", root, tmp_path / "det", image_size=16, patch_size=8, epochs=1, seed=0, device="cpu",
        extra={"mode": "small", "dataset": "toy"},
    )  # fmt: skip
    config = detectors.read_config(tmp_path / "det")
    assert config["mode"] == "small" and config["split_seed"] == 0 and config["recipe"]["epochs"] == 1
    assert config["test_metrics"] == result["test"]
    predictor = inference.load_predictor(tmp_path / "det")
    assert predictor.model.config.patch_size == 8 and predictor.class_names == list(CLASS_NAMES)
    # the split it was trained on, recorded: its own training images are refused, the others pass
    split = config["split"]
    assert (split["root"], split["seed"], split["val_fraction"], len(split["train_files"])) == (
        "data",
        0,
        0.1,
        16,
    )
    samples, _ = datasets.find_images(root)
    train = [path for path, _ in samples if path.relative_to(root).as_posix() in split["train_files"]]
    assert split["train_digest"] == trust.split_digest(train) and len(train) == 16
    with pytest.raises(inference.DetectorError, match=r"^1 evaluation file\(s\) were also training files"):
        inference.check_unseen(config, [*(root / name for name in split["test_files"]), train[0]])
    inference.check_unseen(config, [root / name for name in split["val_files"] + split["test_files"]])


def test_an_old_config_without_a_split_gets_a_loud_warning(capsys):
    inference.check_unseen({"split_seed": 42}, ["fake_images/a.png"])
    out = capsys.readouterr().out
    assert out.startswith("!" * 80) and "WARNING" in out and "records no training files" in out


def test_unknown_detector_kind_is_refused(home):
    with pytest.raises(ValueError, match="finetuned"):
        detectors.find_or_make("best", mode="small", dataset="toy", device="cpu")
