"""Tests for helpers/model/vit.py: sizes, agreement with torchvision and PyTorch's own layers, errors,
training.

ViT-B/16 is built only a few times (module-scoped fixtures) and run on small batches, so the whole
file takes well under a minute on a 2-core CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import vit_b_16
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

from helpers.model.vit import (
    PRESETS,
    MultiHeadSelfAttention,
    PatchEmbedding,
    TransformerEncoderBlock,
    ViT,
    ViTConfig,
    count_parameters,
    get_config,
)

ATOL = 1e-5  # fp32 agreement with torchvision and PyTorch's layers


def perturb_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Add noise to every weight, so zero-initialised parts (head, biases, class token) matter too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- ViT-B/16 against torchvision ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tv_model() -> VisionTransformer:
    torch.manual_seed(0)
    return perturb_(vit_b_16()).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(5, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tv_logits(tv_model, images) -> torch.Tensor:
    with torch.no_grad():
        return tv_model(images)


@pytest.fixture(scope="module")
def ours_from_module(tv_model) -> ViT:
    return ViT.from_torchvision(tv_model).eval()


def test_parameter_counts():
    with torch.device("meta"):  # sizes only: no memory, no random init (the weights: tests marked slow)
        ours, theirs = ViT(ViTConfig()), vit_b_16()
        two_classes = ViT(get_config("vit_b16", num_classes=2))
    assert count_parameters(ours) == count_parameters(theirs) == 86_567_656
    assert count_parameters(ours, trainable_only=True) == 86_567_656
    assert count_parameters(two_classes) == 85_800_194
    two_classes.head.weight.requires_grad_(False)
    assert count_parameters(two_classes, trainable_only=True) == 85_800_194 - 768 * 2


@pytest.mark.slow
def test_matches_torchvision_from_module(tv_model, ours_from_module, images, tv_logits):
    assert count_parameters(ours_from_module) == count_parameters(tv_model) == 86_567_656  # every weight
    assert tv_logits.abs().max() > 0.1  # the perturbed head really produces non-zero logits
    with torch.no_grad():
        assert max_abs_diff(ours_from_module(images), tv_logits) < ATOL  # batch 5
        assert max_abs_diff(ours_from_module(images[:1]), tv_logits[:1]) < ATOL  # batch 1
        features = ours_from_module.forward_features(images[:2])
    assert features.shape == (2, 768)
    torch.testing.assert_close(ours_from_module.head(features), tv_logits[:2], atol=ATOL, rtol=0)


def test_weights_are_copied_not_shared(tv_model, ours_from_module):
    assert ours_from_module.patch_embedding.proj.weight.data_ptr() != tv_model.conv_proj.weight.data_ptr()
    assert all(p.requires_grad and p.device.type == "cpu" for p in ours_from_module.parameters())


@pytest.mark.slow
def test_matches_torchvision_from_state_dict(tv_model, ours_from_module, images, tv_logits):
    ours = ViT.from_torchvision(tv_model.state_dict()).eval()
    assert ours.config == ours_from_module.config  # heads guessed as dim // 64 = 12
    with torch.no_grad():
        assert max_abs_diff(ours(images), tv_logits) < ATOL
        assert max_abs_diff(ours(images[:1]), tv_logits[:1]) < ATOL


@pytest.mark.slow
def test_matches_torchvision_with_legacy_mlp_keys(tv_model, ours_from_module, images, tv_logits):
    legacy = {
        k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v
        for k, v in tv_model.state_dict().items()
    }
    assert any("mlp.linear_1" in k for k in legacy) and not any(".mlp.0." in k for k in legacy)
    ours = ViT.from_torchvision(legacy).eval()
    for (name, a), b in zip(ours.state_dict().items(), ours_from_module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert max_abs_diff(ours(images[:1]), tv_logits[:1]) < ATOL


@pytest.mark.slow
def test_384px_position_embeddings_like_torchvision(tv_model):
    state_384 = interpolate_embeddings(384, 16, dict(tv_model.state_dict()))
    tv_384 = vit_b_16(image_size=384)
    tv_384.load_state_dict(state_384)
    ours = ViT.from_torchvision(tv_model.state_dict(), image_size=384).eval()
    assert ours.config.image_size == 384 and ours.patch_embedding.pos_embedding.shape == (1, 577, 768)
    torch.testing.assert_close(
        ours.patch_embedding.pos_embedding, state_384["encoder.pos_embedding"], atol=0, rtol=0
    )
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert max_abs_diff(ours(x), tv_384.eval()(x)) < ATOL


# --- A small torchvision ViT: fast checks of loading and its errors -----------------------------


@pytest.fixture(scope="module")
def small_tv() -> VisionTransformer:
    torch.manual_seed(3)
    model = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=96, num_classes=3
    )
    return perturb_(model).eval()


def test_small_torchvision_model_heads_from_module(small_tv):
    ours = ViT.from_torchvision(small_tv).eval()
    c = ours.config
    assert (c.image_size, c.patch_size, c.depth, c.heads, c.dim, c.mlp_dim, c.num_classes) == (
        32,
        8,
        2,
        2,
        64,
        96,
        3,
    )
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert max_abs_diff(ours(x), small_tv(x)) < ATOL
    # A state dict does not say how many heads: dim // 64 = 1 head (wrong here; the module says 2).
    assert ViT.from_torchvision(small_tv.state_dict()).config.heads == 1


def _written_out_attention(self, x):
    """softmax(q k^T / sqrt(d)) v from ``attention_weights``, instead of the fused kernel."""
    B, N, D = x.shape
    _, _, v = self.split_heads(x)
    return self.proj((self.attention_weights(x) @ v).transpose(1, 2).reshape(B, N, D))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "written-out"])
def test_both_attention_paths_match_torchvision(small_tv, fused, monkeypatch):
    """The ViT-B/16 comparisons above run the fused kernel; the written-out softmax(q k^T / sqrt(d)) v,
    which lesson 02 teaches and attention maps use, must match torchvision as well."""
    if not fused:
        monkeypatch.setattr(MultiHeadSelfAttention, "forward", _written_out_attention)
        monkeypatch.setattr(
            MultiHeadSelfAttention,
            "forward_class_token",
            lambda self, x: _written_out_attention(self, x)[:, :1],
        )
    ours = ViT.from_torchvision(small_tv).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert max_abs_diff(ours(x), small_tv(x)) < ATOL


def test_missing_key_is_named(small_tv):
    state = dict(small_tv.state_dict())
    del state["encoder.ln.weight"]
    with pytest.raises(KeyError, match="encoder.ln.weight"):
        ViT.from_torchvision(state)


def test_shape_mismatch_is_named(small_tv):
    state = dict(small_tv.state_dict())
    state["encoder.layers.encoder_layer_1.ln_2.bias"] = torch.zeros(65)
    with pytest.raises(ValueError, match=r"encoder\.layers\.encoder_layer_1\.ln_2\.bias"):
        ViT.from_torchvision(state)


def test_unexpected_key_is_named(small_tv):
    state = dict(small_tv.state_dict())
    state["heads.pre_logits.weight"] = torch.zeros(64, 64)
    with pytest.raises(ValueError, match="heads.pre_logits.weight"):
        ViT.from_torchvision(state)


# --- Blocks against PyTorch's own layers ---------------------------------------------------------


def test_encoder_block_equals_pytorch_encoder_layer():
    torch.manual_seed(4)
    dim, heads, mlp_dim = 64, 4, 128
    ours = perturb_(TransformerEncoderBlock(dim, heads, mlp_dim)).eval()
    ref = nn.TransformerEncoderLayer(
        dim,
        heads,
        mlp_dim,
        dropout=0.0,
        activation="gelu",
        layer_norm_eps=1e-6,
        batch_first=True,
        norm_first=True,
    ).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.attn.to_qkv.weight)
        ref.self_attn.in_proj_bias.copy_(ours.attn.to_qkv.bias)
        ref.self_attn.out_proj.load_state_dict(ours.attn.proj.state_dict())
        ref.linear1.load_state_dict(ours.mlp.fc1.state_dict())
        ref.linear2.load_state_dict(ours.mlp.fc2.state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
        x = torch.randn(3, 17, dim)
        assert max_abs_diff(ours(x), ref(x)) < ATOL
        assert ours.attn.attention_weights(ours.norm1(x)).shape == (3, heads, 17, 17)
        # The [class]-token-only path of the last block gives the same numbers for token 0.
        assert max_abs_diff(ours.forward_class_token(x), ours(x)[:, :1]) < ATOL


def test_attention_written_out_equals_fused_and_pytorch():
    torch.manual_seed(5)
    dim, heads = 48, 3
    attn = perturb_(MultiHeadSelfAttention(dim, heads)).eval()
    ref = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(attn.to_qkv.weight)
        ref.in_proj_bias.copy_(attn.to_qkv.bias)
        ref.out_proj.load_state_dict(attn.proj.state_dict())
        x = torch.randn(2, 11, dim)
        fused = attn(x)
        weights = attn.attention_weights(x)  # the written-out softmax(q k^T / sqrt(d))
        _, _, v = attn.split_heads(x)
        written_out = attn.proj((weights @ v).transpose(1, 2).reshape(2, 11, dim))
        ref_out, ref_weights = ref(x, x, x, need_weights=True, average_attn_weights=False)
    assert fused.shape == (2, 11, dim) and weights.shape == (2, heads, 11, 11)
    assert max_abs_diff(fused, written_out) < ATOL
    assert max_abs_diff(fused, ref_out) < ATOL and max_abs_diff(weights, ref_weights) < ATOL
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, heads, 11))
    assert (weights >= 0).all()


def test_default_attention_does_not_compute_weights(monkeypatch):
    attn = MultiHeadSelfAttention(32, 2).eval()
    monkeypatch.setattr(torch.Tensor, "softmax", lambda *a, **k: pytest.fail("fused path called softmax"))
    assert attn(torch.randn(1, 5, 32)).shape == (1, 5, 32)


# --- vit_tiny: batch sizes, errors, attention maps, head, training ------------------------------


@pytest.fixture()
def tiny() -> ViT:
    torch.manual_seed(6)
    return ViT(get_config("vit_tiny"))


def test_presets():
    assert PRESETS["vit_b16"] == ViTConfig()
    tiny = get_config("vit_tiny")
    assert (tiny.image_size, tiny.patch_size, tiny.num_patches) == (64, 8, 64)
    with torch.device("meta"):
        assert 1_000_000 <= count_parameters(ViT(tiny)) <= 3_000_000
    assert get_config("vit_b16", num_classes=2).num_classes == 2 and PRESETS["vit_b16"].num_classes == 1000
    with pytest.raises(ValueError, match="vit_tiny"):
        get_config("vit_huge")


def test_config_round_trip_and_errors():
    config = get_config("vit_tiny", dropout=0.1)
    assert ViTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="colour"):
        ViTConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match=r"image_size=100.*patch_size=16"):
        ViTConfig(image_size=100)


def test_class_token_is_not_sized_by_batch(tiny):
    shapes = {k: v.shape for k, v in tiny.state_dict().items()}
    assert tiny.patch_embedding.class_token.shape == (1, 1, 192)
    tiny.eval()
    with torch.no_grad():
        for batch in (1, 3, 7):
            assert tiny(torch.randn(batch, 3, 64, 64)).shape == (batch, 2)
            assert tiny.patch_embedding(torch.randn(batch, 3, 64, 64)).shape == (batch, 65, 192)
    assert {k: v.shape for k, v in tiny.state_dict().items()} == shapes


def test_wrong_image_size_names_both_sizes(tiny):
    with pytest.raises(ValueError, match=r"72x72.*64x64"):
        tiny(torch.randn(1, 3, 72, 72))
    with pytest.raises(ValueError, match=r"60x60.*64x64.*patch size 8"):
        tiny(torch.randn(1, 3, 60, 60))
    with pytest.raises(ValueError, match=r"1 channels.*expects 3"):
        tiny(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"100.*16"):
        PatchEmbedding(100, 16, 3, 32)


def test_attention_maps(tiny):
    with torch.no_grad():
        maps = tiny.attention_maps(torch.randn(2, 3, 64, 64))
    assert len(maps) == 6
    for m in maps:
        assert m.shape == (2, 3, 65, 65)
        torch.testing.assert_close(m.sum(-1), torch.ones(2, 3, 65))


def test_reset_head(tiny):
    perturb_(tiny)
    tiny.reset_head(5)
    assert tiny.config.num_classes == 5 and tiny.head.weight.shape == (5, 192)
    assert PRESETS["vit_tiny"].num_classes == 2  # the preset itself is unchanged
    x = torch.randn(4, 3, 64, 64)
    assert torch.equal(tiny(x), torch.zeros(4, 5))  # a new head starts at zero
    assert tiny.forward_features(x).abs().sum() > 0


@pytest.mark.slow
def test_vit_tiny_learns_fixed_labels(tiny):
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(8, 3, 64, 64, generator=g), torch.randint(0, 2, (8,), generator=g)
    optimizer = torch.optim.AdamW(tiny.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = nn.functional.cross_entropy(tiny(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-4)  # zero head: chance
    assert losses[-1] < 0.5 * losses[0], losses
