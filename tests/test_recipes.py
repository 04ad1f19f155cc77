"""helpers.train.recipes: the named recipes, their checks, parameter groups, optimisers and schedules."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from helpers.model.pretrained import freeze_for_recipe
from helpers.train import recipes
from helpers.train.recipes import RECIPES, Recipe, get_recipe


def test_the_named_recipes():
    assert sorted(RECIPES) == ["finetune", "linear_probe", "scratch", "tutorial"]
    assert all(name == recipe.name for name, recipe in RECIPES.items())
    probe, finetune, tutorial = RECIPES["linear_probe"], RECIPES["finetune"], RECIPES["tutorial"]
    assert not probe.train_backbone and probe.pretrained and finetune.pretrained
    assert finetune.backbone_lr_scale < 1 and RECIPES["scratch"].backbone_lr_scale == 1
    assert (tutorial.optimizer, tutorial.schedule, tutorial.grad_clip) == ("adam", "constant", None)
    for recipe in RECIPES.values():  # JSON and back, as a run saves it
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_get_recipe_replaces_fields_and_leaves_the_named_recipe_alone():
    short = get_recipe("scratch", epochs=2, lr=5e-4)
    assert (short.epochs, short.lr, short.name) == (2, 5e-4, "scratch")
    assert short.weight_decay == RECIPES["scratch"].weight_decay
    assert RECIPES["scratch"].epochs != 2, "the dict's recipe is not changed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        short.lr = 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"warmup_epochs": 20}, "warmup_epochs must be between 0 and epochs"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
        ({"grad_clip": 0}, "grad_clip must be None"),
        ({"backbone_lr_scale": 0}, "backbone_lr_scale must be > 0"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"schedule": "constant"}, "warmup_epochs must be 0 with schedule='constant'"),
        ({"lrr": 1e-3}, r"unknown recipe field\(s\) \['lrr'\]"),
    ],
)
def test_bad_values_are_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_recipe("scratch", **overrides)


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown recipe 'fast'.*'finetune'.*'scratch'"):
        get_recipe("fast")
    with pytest.raises(ValueError, match="unknown recipe field"):
        Recipe.from_dict({**RECIPES["scratch"].to_dict(), "momentum": 0.9})


def test_warmup_cosine_schedule_values():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = recipes.warmup_cosine_schedule(optimizer, warmup_steps=2, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])  # linear warm-up, then the top of the cosine
    assert lrs[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))  # half way down: 0.5
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))  # never rises after warm-up
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # 0 after the last step


def test_weight_decay_groups_exempt_biases_norms_and_embeddings(tiny_vit):
    model = tiny_vit()
    model.blocks[1].requires_grad_(False)
    decay, no_decay = recipes.weight_decay_groups(model.named_parameters(), 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    assert {
        "patch_embedding.class_token",
        "patch_embedding.pos_embedding",
        "norm.weight",
        "head.bias",
        "blocks.0.attn.to_qkv.bias",
    } <= no_decay_names
    assert {"patch_embedding.proj.weight", "blocks.0.attn.to_qkv.weight", "head.weight"} <= decay_names
    assert not any(n.startswith("blocks.1.") for n in decay_names | no_decay_names)  # frozen: left out


def test_finetune_groups_give_the_backbone_a_smaller_learning_rate(tiny_vit):
    model = tiny_vit()
    recipe = RECIPES["finetune"]
    optimizer = recipes.make_optimizer(freeze_for_recipe(model, recipe), recipe)
    assert isinstance(optimizer, torch.optim.AdamW)
    head_ids = {id(model.head.weight), id(model.head.bias)}
    for group in optimizer.param_groups:
        in_head = {id(p) in head_ids for p in group["params"]}
        assert len(in_head) == 1  # a group is all head or all backbone
        expected = recipe.lr if in_head == {True} else recipe.lr * recipe.backbone_lr_scale
        assert group["lr"] == pytest.approx(expected)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_linear_probe_trains_only_the_head(tiny_vit):
    model = freeze_for_recipe(tiny_vit(), RECIPES["linear_probe"])
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    optimizer = recipes.make_optimizer(model, RECIPES["linear_probe"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2
    freeze_for_recipe(model, RECIPES["finetune"])
    assert all(p.requires_grad for p in model.parameters())


def test_the_tutorial_recipe_is_adam_with_coupled_decay_on_every_weight_and_a_constant_rate(tiny_vit):
    model, recipe = tiny_vit(), RECIPES["tutorial"]
    optimizer = recipes.make_optimizer(model, recipe)
    assert type(optimizer) is torch.optim.Adam
    [group] = optimizer.param_groups  # one group: biases and norms decay too, as in the tutorial
    assert len(group["params"]) == len(list(model.parameters()))
    assert (group["lr"], group["weight_decay"]) == (recipe.lr, recipe.weight_decay)
    schedule = recipes.make_schedule(optimizer, recipe, steps_per_epoch=4)
    for _ in range(3 * 4):
        optimizer.step()
        schedule.step()
        assert optimizer.param_groups[0]["lr"] == recipe.lr


def test_a_model_without_trainable_parameters_is_refused(tiny_vit):
    model = tiny_vit().requires_grad_(False)
    for recipe in RECIPES.values():
        with pytest.raises(ValueError, match="no trainable parameters"):
            recipes.make_optimizer(model, recipe)


def test_make_schedule_warms_up_for_the_recipes_epochs():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    recipe = get_recipe("scratch", epochs=4, warmup_epochs=0.5)
    schedule = recipes.make_schedule(optimizer, recipe, steps_per_epoch=10)  # 5 warm-up steps of 40
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[5] == 1.0 and lrs[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 1 / 35)))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)
