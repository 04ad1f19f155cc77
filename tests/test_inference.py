"""Exporting a detector to safetensors + JSON, and loading it back for single-image predictions."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from helpers.data import eval_transform_spec
from helpers.inference import CheckpointError, load_predictor, save_for_inference
from helpers.vit import ViT, get_config

CLASSES = ["fake_images", "real_images"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = ViT(get_config("vit_tiny", image_size=32, depth=1))
    torch.nn.init.normal_(net.head.weight)  # the head starts at zero: make the outputs depend on the image
    return net.eval()


@pytest.fixture
def checkpoint(tmp_path, model):
    return save_for_inference(
        model, tmp_path / "ckpt", CLASSES, eval_transform_spec(32, pretrained=False), "vit_tiny"
    )


def test_round_trip_gives_the_same_predictions(tmp_path, model, checkpoint):
    assert sorted(p.name for p in checkpoint.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_name"] == "vit_tiny" and config["class_names"] == CLASSES
    assert config["vit_config"]["image_size"] == 32
    assert set(load_file(checkpoint / "model.safetensors")) == set(model.state_dict())

    predictor = load_predictor(checkpoint)
    image = Image.linear_gradient("L").resize((48, 40)).convert("RGB")
    path = tmp_path / "gradient.png"
    image.save(path)
    expected = model(predictor.transform(image).unsqueeze(0)).softmax(-1)[0]
    for given in (image, path, str(path)):
        probs = predictor.predict(given)
        assert list(probs) == CLASSES
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(torch.tensor(list(probs.values())), expected.detach(), atol=1e-6, rtol=0)


def test_any_image_mode_is_accepted(checkpoint):
    predictor = load_predictor(checkpoint)
    images = [Image.new(mode, (20, 30)) for mode in ("RGBA", "L", "P", "CMYK", "1")] + [
        Image.new("RGB", (1, 1))
    ]
    probs = predictor.predict_batch(images)
    assert probs.shape == (len(images), 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(images)))


def test_missing_files_are_named(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors not found"):
        load_predictor(checkpoint)
    with pytest.raises(CheckpointError, match="config.json not found"):
        load_predictor(checkpoint.parent / "nowhere")


def test_weights_of_another_model_are_refused_naming_the_file(checkpoint):
    config_path = checkpoint / "config.json"
    config = json.loads(config_path.read_text())
    config["vit_config"]["depth"] = 2
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors does not fit"):
        load_predictor(checkpoint)


def test_a_broken_config_is_refused_naming_the_file(checkpoint):
    config_path = checkpoint / "config.json"
    config_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not a valid"):
        load_predictor(checkpoint)
    config = {
        "format": "fake-vit/1",
        "vit_config": get_config("vit_tiny").to_dict(),
        "class_names": ["only_one"],
        "transform": eval_transform_spec(64, pretrained=False),
    }
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="1 class names"):
        load_predictor(checkpoint)


def test_class_names_must_match_the_head(tmp_path, model):
    with pytest.raises(ValueError, match="3 class names"):
        save_for_inference(
            model, tmp_path, ["a", "b", "c"], eval_transform_spec(32, pretrained=False), "vit_tiny"
        )
