"""helpers.serving.inference: a detector exported to safetensors + JSON loads back and predicts the same."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from helpers.data.transforms import eval_transform_spec
from helpers.model.vit import get_config
from helpers.serving.inference import DetectorError, load_predictor, save_detector

CLASSES = ["fake_images", "real_images"]


@pytest.fixture
def exported(tmp_path, tiny_detector):
    """``(model, detector folder)``: a tiny ViT and its export."""
    return tiny_detector(tmp_path / "detector")


@pytest.fixture
def model(exported):
    return exported[0]


@pytest.fixture
def detector(exported):
    return exported[1]


def test_round_trip_gives_the_same_predictions(tmp_path, model, detector):
    assert sorted(p.name for p in detector.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((detector / "config.json").read_text())
    assert config["model_name"] == "vit_tiny" and config["class_names"] == CLASSES
    assert config["vit_config"]["image_size"] == 32
    assert set(load_file(detector / "model.safetensors")) == set(model.state_dict())

    predictor = load_predictor(detector, precision="fp32")  # exactly the model's numbers
    image = Image.linear_gradient("L").resize((48, 40)).convert("RGB")
    path = tmp_path / "gradient.png"
    image.save(path)
    expected = model(predictor.transform(image).unsqueeze(0)).softmax(-1)[0]
    for given in (image, path, str(path)):
        probs = predictor.predict(given)
        assert list(probs) == CLASSES
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        torch.testing.assert_close(torch.tensor(list(probs.values())), expected.detach(), atol=1e-6, rtol=0)


def test_any_image_mode_is_accepted(detector):
    predictor = load_predictor(detector)
    images = [Image.new(mode, (20, 30)) for mode in ("RGBA", "L", "P", "CMYK", "1")] + [
        Image.new("RGB", (1, 1))
    ]
    probs = predictor.predict_batch(images)
    assert probs.shape == (len(images), 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(images)))


def test_a_training_run_folder_works_too(tmp_path, detector):
    run = tmp_path / "run"
    (run / "detector").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (run / "detector" / name).write_bytes((detector / name).read_bytes())
    image = Image.new("RGB", (40, 40), (200, 30, 60))
    assert load_predictor(run).predict(image) == load_predictor(detector).predict(image)


def test_missing_files_are_named(detector):
    (detector / "model.safetensors").unlink()
    with pytest.raises(DetectorError, match="model.safetensors not found"):
        load_predictor(detector)
    with pytest.raises(DetectorError, match="config.json not found"):
        load_predictor(detector.parent / "nowhere")


def test_weights_of_another_model_are_refused_naming_the_file(detector):
    config_path = detector / "config.json"
    config = json.loads(config_path.read_text())
    config["vit_config"]["depth"] = 2
    config_path.write_text(json.dumps(config))
    with pytest.raises(DetectorError, match="model.safetensors does not fit"):
        load_predictor(detector)


def test_a_broken_config_is_refused_naming_the_file(detector):
    config_path = detector / "config.json"
    config_path.write_text("{not json")
    with pytest.raises(DetectorError, match="config.json is not a valid"):
        load_predictor(detector)
    config = {
        "format": "fake-vit/1",
        "vit_config": get_config("vit_tiny").to_dict(),
        "class_names": ["only_one"],
        "transform": eval_transform_spec(64, pretrained=False),
    }
    config_path.write_text(json.dumps(config))
    with pytest.raises(DetectorError, match="1 class names"):
        load_predictor(detector)


def test_class_names_must_match_the_head(tmp_path, model):
    with pytest.raises(ValueError, match="3 class names"):
        save_detector(model, tmp_path, ["a", "b", "c"], eval_transform_spec(32, pretrained=False), "vit_tiny")


def test_weights_that_run_code_when_unpickled_are_refused_and_never_run(detector, plant_code_on_unpickle):
    marker = plant_code_on_unpickle(detector / "model.safetensors")  # a pickle under the weights' name
    with pytest.raises(DetectorError, match="model.safetensors is not a readable safetensors file"):
        load_predictor(detector)
    assert not marker.exists(), "loading the detector ran the code in its weights file"


def test_the_decision_uses_the_threshold_in_the_config_else_half_and_says_which(detector):
    predictor = load_predictor(detector)
    assert predictor.threshold == 0.5 and "the default: no threshold chosen" in predictor.threshold_note()
    assert predictor.says_fake({"fake_images": 0.51}) and not predictor.says_fake({"fake_images": 0.5})
    config = json.loads((detector / "config.json").read_text())
    (detector / "config.json").write_text(json.dumps({**config, "threshold": 0.7, "target_fpr": 0.05}))
    predictor = load_predictor(detector)
    assert predictor.threshold == 0.7 and not predictor.says_fake({"fake_images": 0.7})  # strictly above
    assert predictor.says_fake({"fake_images": 0.71})
    assert predictor.threshold_note() == (
        "fake when P(fake) > 0.700, chosen on validation images for 5% of real photos flagged"
    )
