"""helpers.train.loop: fit learns, keeps the best weights, repeats itself exactly; the linear probe on
cached features trains the same head as full forward passes."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers.train import loop, probe, run
from helpers.train.recipes import get_recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

RECIPE = get_recipe("scratch", epochs=4, lr=3e-3)
TIMING_KEYS = ("seconds", "train_images_per_second")


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


def test_fit_learns_restores_best_weights_and_is_repeatable(synthetic_loaders, tiny_vit):
    train, val, test = synthetic_loaders()
    result = loop.fit(tiny_vit(), train, val, RECIPE, device="cpu", test_loader=test, seed=7, progress=False)
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert list(history[0]) == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_precision",
        "val_recall",
        "val_f1",
        "val_auroc",
        "lr",
        "train_images_per_second",
        "seconds",
    ]
    assert all(type(v) in (int, float) for h in history for v in h.values())
    assert result["test"]["accuracy"] >= 0.9  # the red channel gives the class away
    best = history[result["best_epoch"] - 1]
    assert best["val_accuracy"] == max(h["val_accuracy"] for h in history)
    # the model ends with the best epoch's weights: its validation numbers are that epoch's
    assert result["val"]["accuracy"] == best["val_accuracy"]
    assert result["val"]["loss"] == pytest.approx(best["val_loss"], abs=1e-6)
    assert history[-1]["lr"] == pytest.approx(0.0)  # the cosine ends at 0

    train, val, test = synthetic_loaders()
    again = loop.fit(tiny_vit(), train, val, RECIPE, device="cpu", test_loader=test, seed=7, progress=False)
    assert without_timings(again["history"]) == without_timings(history)
    assert again["test"] == result["test"]


def test_train_one_epoch_clips_the_gradient_norm(synthetic_loaders, tiny_vit):
    """One step with grad_clip: the update AdamW makes does not depend on the gradient's size, so
    check the clipped gradient itself."""
    train, _, _ = synthetic_loaders(batch_size=64)  # one batch
    model = tiny_vit()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that changes nothing
    loop.train_one_epoch(
        model, train, optimizer=optimizer, loss_fn=torch.nn.CrossEntropyLoss(), device="cpu", progress=False
    )
    free = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm()
    loop.train_one_epoch(
        model,
        train,
        optimizer=optimizer,
        loss_fn=torch.nn.CrossEntropyLoss(),
        device="cpu",
        grad_clip=0.1 * free.item(),
        progress=False,
    )
    clipped = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm()
    assert clipped == pytest.approx(0.1 * free.item(), rel=1e-4)


def test_cached_feature_probe_trains_the_same_head_as_full_forward_passes(synthetic_loaders, tiny_vit):
    train, val, test = synthetic_loaders()
    backbone = tiny_vit()
    full_model, probe_model = copy.deepcopy(backbone), copy.deepcopy(backbone)
    recipe = get_recipe("linear_probe", epochs=3, lr=1e-2, weight_decay=0.01)
    settings = dict(device="cpu", seed=3, progress=False)

    full_model.requires_grad_(False)
    full_model.head.requires_grad_(True)  # the tutorial's way: frozen backbone run on every batch
    full = loop.fit(full_model, train, val, recipe, test_loader=test, **settings)

    train, val, test = synthetic_loaders()
    probed = probe.fit_linear_probe(probe_model, train, val, recipe, test_loader=test, **settings)

    torch.testing.assert_close(probe_model.head.weight, full_model.head.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probe_model.head.bias, full_model.head.bias, atol=1e-5, rtol=1e-4)
    assert probed["test"]["accuracy"] == full["test"]["accuracy"]
    assert [h["val_accuracy"] for h in probed["history"]] == [h["val_accuracy"] for h in full["history"]]
    assert probe_model.head.weight.abs().sum() > 0  # the head did learn (it starts at zero)
    assert probed["feature_seconds"] > 0 and probed["seconds"] >= probed["feature_seconds"]
    for key, value in backbone.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(probe_model.state_dict()[key], value), f"{key} changed in a linear probe"


def test_fit_refuses_fp16_on_a_cpu_and_resume_without_a_folder(synthetic_loaders, tiny_vit):
    train, val, _ = synthetic_loaders()
    with pytest.raises(ValueError, match="fp16.*needs a CUDA GPU"):
        loop.fit(tiny_vit(), train, val, RECIPE, device="cpu", precision="fp16", progress=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        loop.fit(tiny_vit(), train, val, RECIPE, device="cpu", precision="fp64", progress=False)
    with pytest.raises(ValueError, match="resume=True needs the out_dir"):
        run.resumable_fit(
            tiny_vit(), train, val, RECIPE, device="cpu", out_dir=None, resume=True, progress=False
        )
