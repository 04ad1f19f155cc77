"""Tests for helpers/model/figure.py: the architecture figure names what helpers.model.vit really has."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from helpers.model import figure as vit_figure
from helpers.model.vit import ViT, get_config


def figure_text(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


@pytest.fixture
def tiny():
    return get_config("vit_tiny")  # 64-pixel images, 8-pixel patches: 64 patches, D = 192, 6 blocks


def test_every_name_on_the_figure_is_an_attribute_of_helpers_vit(tiny):
    model = ViT(tiny)
    modules, parameters = dict(model.named_modules()), dict(model.named_parameters())
    block_modules = dict(model.blocks[0].named_modules())
    assert vit_figure.MODEL_NAMES and vit_figure.MODEL_PARAMETERS and vit_figure.BLOCK_NAMES
    for name in vit_figure.MODEL_NAMES:
        assert name in modules, f"the figure names {name}, which helpers.model.vit.ViT does not have"
    for name in vit_figure.MODEL_PARAMETERS:
        assert name in parameters, f"the figure names the parameter {name}, which ViT does not have"
    for name in vit_figure.BLOCK_NAMES:
        assert name in block_modules, f"the figure names blocks[i].{name}, which the block does not have"


def test_the_figure_shows_the_names_the_classes_the_equations_and_the_sizes(tiny):
    image = torch.rand(3, 64, 64)
    fig = vit_figure.draw_architecture(tiny, image=image)
    text = figure_text(fig)
    plt.close(fig)
    names = vit_figure.MODEL_NAMES + vit_figure.BLOCK_NAMES
    names += tuple(n.split(".")[-1] for n in vit_figure.MODEL_PARAMETERS)
    for name in names:
        assert f"{name.split('.')[-1]}:" in text or f"{name} (" in text, f"{name} is not on the figure"
    for cls in ("PatchEmbedding", "Conv2d", "TransformerEncoderBlock", "MultiHeadSelfAttention", "MLPBlock"):
        assert cls in text
    for equation in ("Eq. 1", "Eq. 2", "Eq. 3", "Eq. 4"):
        assert equation in text
    # the sizes come from the config: 64 patches + [class], width 192, 6 blocks, 2 classes
    assert "(B, 65, 192)" in text and "6 x TransformerEncoderBlock" in text and "192 -> 2" in text
    assert "N = (64/8)² = 64 patches" in text


def test_the_default_is_vit_b16():
    fig = vit_figure.draw_architecture()
    text = figure_text(fig)
    plt.close(fig)
    assert "(B, 197, 768)" in text and "12 x TransformerEncoderBlock" in text and "768 -> 1000" in text
