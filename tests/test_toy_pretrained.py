"""helpers.lessons.toy_pretrained: lesson 04's source model is repeatable, cached in the home and reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.data.toy import make_toy_dataset
from helpers.lessons import toy_pretrained


@pytest.fixture(scope="module")
def tiny_toy(tmp_path_factory):
    """A toy dataset of 10 images per class: enough for one quick epoch."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", images_per_class=10)


RECIPE = toy_pretrained.source_recipe(epochs=1)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_pretraining_is_repeatable_for_a_seed_and_differs_for_another(tiny_toy):
    first, info = toy_pretrained.pretrain_source_model(tiny_toy, RECIPE, seed=0)
    again, _ = toy_pretrained.pretrain_source_model(tiny_toy, RECIPE, seed=0)
    other, _ = toy_pretrained.pretrain_source_model(tiny_toy, RECIPE, seed=1)
    assert _same_weights(first, again)
    assert not _same_weights(first, other)
    assert info["recipe"] == RECIPE.to_dict() and info["seed"] == 0 and info["model"] == "vit_tiny"
    assert 0.0 <= info["source_test_accuracy"] <= 1.0


@pytest.mark.slow
def test_the_source_model_is_cached_in_the_home_and_reused(tiny_toy, tmp_path, monkeypatch):
    calls = []
    real_pretrain = toy_pretrained.pretrain_source_model

    def pretrain_on_the_tiny_set(data_root, recipe, **options):
        calls.append(recipe.epochs)
        return real_pretrain(tiny_toy, recipe, **options)

    monkeypatch.setattr(toy_pretrained, "pretrain_source_model", pretrain_on_the_tiny_set)
    monkeypatch.setattr("helpers.data.sources.get_dataset", lambda name, root=None, **kw: tiny_toy)
    home = tmp_path / "home"

    made, info = toy_pretrained.load_source_model(epochs=1, home=home)
    weights, info_file = toy_pretrained.source_paths(home)
    assert weights == home / "build" / "pretrained" / "toy_vit_tiny_source.safetensors"
    assert weights.is_file() and info_file.is_file() and not info["cached"] and calls == [1]

    reused, info = toy_pretrained.load_source_model(epochs=1, home=home)
    assert info["cached"] and calls == [1]  # read back, not trained again
    assert _same_weights(made, reused)

    toy_pretrained.load_source_model(epochs=2, home=home)  # another recipe: trained again
    assert calls == [1, 2]
    info_file.write_text(info_file.read_text().replace('"seed": 0', '"seed": 7'))
    toy_pretrained.load_source_model(epochs=2, home=home)  # the JSON no longer matches: trained again
    assert calls == [1, 2, 2]


def test_tensor_loader_gives_normalised_images_in_order():
    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    images[1] = 255
    loader = toy_pretrained.tensor_loader(
        images, np.array([0, 1, 0, 1]), lambda x: x.float() / 255, batch_size=4, shuffle=False
    )
    batch, labels = next(iter(loader))
    assert batch.shape == (4, 3, 8, 8) and labels.tolist() == [0, 1, 0, 1]
    assert batch[1].min() == 1.0 and batch[0].max() == 0.0
