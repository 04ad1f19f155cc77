"""helpers.lessons.toy_pretrained: lesson 04's source model is lesson 03's tiny ViT, read from the home."""

from __future__ import annotations

import numpy as np
import torch

from helpers.data import transforms
from helpers.lessons import detectors, toy_pretrained
from helpers.model.vit import ViT, get_config
from helpers.serving import inference
from helpers.train import trust


def test_the_source_model_is_lesson_03s_tiny_vit_read_from_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKEVIT_HOME", str(tmp_path))
    torch.manual_seed(0)
    saved = ViT(get_config("vit_tiny", image_size=64, patch_size=8, num_classes=2))
    train = [(tmp_path / "toy" / "real_images" / f"{i}.png", 1) for i in range(7)]
    split = inference.split_record(tmp_path / "toy", 42, {"train": train, "val": [], "test": []})
    right = trust.metric_intervals(torch.tensor([[0.9, 0.1], [0.2, 0.8]] * 5), torch.tensor([0, 1] * 5))
    extra = {"dataset": "toy", "split_seed": 42, "split": split, "test_metrics": right}
    spec = transforms.eval_transform_spec(64, pretrained=False)
    names = ["fake_images", "real_images"]
    inference.save_detector(
        saved.eval(), detectors.scratch_detector_dir(), names, spec, "vit_tiny", extra=extra
    )

    def no_training(*args, **kwargs):
        raise AssertionError("lesson 03's tiny ViT is in the home: nothing should be trained")

    monkeypatch.setattr(detectors, "train_detector", no_training)
    model, info = toy_pretrained.load_source_model()
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), saved.state_dict().values(), strict=True)
    )
    assert not model.training and info["model"] == "vit_tiny" and info["train_images"] == 7
    assert info["source_test_accuracy"] == 1.0  # read from lesson 03's interval record


def test_tensor_loader_gives_normalised_images_in_order():
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    images[1] = 255
    loader = toy_pretrained.tensor_loader(
        images, np.array([0, 1, 0, 1]), lambda x: x.float() / 255, batch_size=4, shuffle=False
    )
    batch, labels = next(iter(loader))
    assert batch.shape == (4, 3, 8, 8) and labels.tolist() == [0, 1, 0, 1]
    assert batch[1].min() == 1.0 and batch[0].max() == 0.0
