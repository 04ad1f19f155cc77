"""helpers.data.transforms: the pretrained eval transform is torchvision's; the scratch one never
resamples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_eval_transform,
    eval_transform_spec,
    pretrained_transforms,
    scratch_transforms,
)


def test_pretrained_eval_transform_matches_torchvision_weights_transforms(random_rgb):
    from torchvision.models import ViT_B_16_Weights

    image = random_rgb(np.random.default_rng(0), 300, 257)
    spec = eval_transform_spec(224, pretrained=True)
    assert spec["resize"] == 256 and spec["crop"] == 224
    assert json.loads(json.dumps(spec)) == spec  # an exported detector stores it as JSON
    ours = build_eval_transform(spec)(image)
    reference = ViT_B_16_Weights.IMAGENET1K_V1.transforms()(image)
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    assert torch.equal(pretrained_transforms(224)[1](image), ours)
    assert eval_transform_spec(64, pretrained=True)["resize"] == 73
    assert eval_transform_spec(64, pretrained=False) == {
        "resize": 64,
        "crop": 64,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }
    with pytest.raises(ValueError, match="missing"):
        build_eval_transform({"resize": 8})


def test_scratch_train_transform_moves_pixels_but_never_resamples_them(random_rgb):
    image = random_rgb(np.random.default_rng(0), 32, 32)
    train_tf, eval_tf = scratch_transforms(32)
    original = eval_tf(image)  # (3, 32, 32), normalised
    values = {round(v, 4) for v in original.flatten().tolist()}
    torch.manual_seed(0)
    outputs = [train_tf(image) for _ in range(5)]
    assert all(o.shape == (3, 32, 32) for o in outputs)
    assert any(not torch.equal(o, original) for o in outputs), "augmentation changes the image"
    for output in outputs:  # every output value is an input value: shifted and flipped, not interpolated
        assert {round(v, 4) for v in output.flatten().tolist()} <= values
    assert torch.equal(eval_tf(image), original)
    big = random_rgb(np.random.default_rng(1), 300, 240)
    train_tf, eval_tf = pretrained_transforms(64)
    assert train_tf(big).shape == (3, 64, 64) and eval_tf(big).shape == (3, 64, 64)
