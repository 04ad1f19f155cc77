"""Loading torchvision's ViT weights into the course's ViT, key by key (lessons 02 and 04): torchvision's
``encoder.layers.encoder_layer_0.ln_1`` is our ``blocks.0.norm1``; its ``in_proj_weight`` our ``to_qkv``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from helpers.model.vit import ViT, ViTConfig, interpolate_position_embedding


def vit_from_torchvision(model_or_state_dict: nn.Module | Mapping, image_size: int | None = None) -> ViT:
    """A ViT (a CPU copy) with a torchvision ``VisionTransformer``'s weights (module or state dict; heads from
    the module, else ``dim // 64``); another ``image_size`` resizes the position embeddings."""
    dropout = attention_dropout = 0.0
    heads = None
    if isinstance(model_or_state_dict, nn.Module):
        module = model_or_state_dict
        if not hasattr(module, "conv_proj"):
            got = type(module).__name__
            raise TypeError(
                f"from_torchvision expects torchvision's VisionTransformer or its state dict, got a {got}."
            )
        state = module.state_dict()
        heads = module.encoder.layers[0].self_attention.num_heads
        dropout, attention_dropout = module.dropout, module.attention_dropout
    else:
        state = dict(model_or_state_dict)
    # Copies (never views), so training our model cannot change the source model.
    state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    depth = sum(1 for k in state if k.startswith("encoder.layers.") and k.endswith(".ln_1.weight"))
    legacy = "encoder.layers.encoder_layer_0.mlp.linear_1.weight" in state
    ours_to_theirs = _torchvision_key_map(max(depth, 1), legacy)
    missing = sorted(set(ours_to_theirs.values()) - set(state))
    if missing:
        raise KeyError(f"torchvision ViT weights have no {missing}: is this a VisionTransformer state dict?")
    extra = sorted(set(state) - set(ours_to_theirs.values()))
    if extra:
        raise ValueError(
            f"Unexpected key(s) {extra} in torchvision ViT weights; only a plain ViT with "
            "one Linear head (no conv stem, no pre_logits) can be loaded."
        )
    dim, in_channels, patch_size, _ = state["conv_proj.weight"].shape
    mlp_dim = state[ours_to_theirs["blocks.0.mlp.fc1.weight"]].shape[0]
    num_classes = state["heads.head.weight"].shape[0]
    pos = state["encoder.pos_embedding"]  # (1, N+1, D)
    grid = math.isqrt(pos.shape[1] - 1) if pos.ndim == 3 else 0  # G: patches per side
    if pos.ndim != 3 or pos.shape[0] != 1 or grid * grid != pos.shape[1] - 1:
        raise ValueError(f"'encoder.pos_embedding' has shape {tuple(pos.shape)}; expected (1, G*G + 1, D).")
    if heads is None and dim % 64 != 0:
        raise ValueError(
            f"Cannot guess the number of heads for dim={dim}; pass the module, not its state dict."
        )
    heads = dim // 64 if heads is None else heads

    sizes = {"patch_size": patch_size, "in_channels": in_channels, "num_classes": num_classes, "dim": dim}
    sizes |= {"depth": depth, "heads": heads, "mlp_dim": mlp_dim}
    sizes |= {"dropout": dropout, "attention_dropout": attention_dropout}
    config = ViTConfig(image_size or grid * patch_size, **sizes)
    new_grid = config.image_size // patch_size
    if new_grid != grid:
        state["encoder.pos_embedding"] = interpolate_position_embedding(pos, new_grid)

    with torch.device("meta"):  # no memory and no random init: every tensor is replaced below
        model = ViT(config)
    needed = model.state_dict()
    for ours, theirs in ours_to_theirs.items():  # every shape checked before any tensor is taken
        got, shape = tuple(state[theirs].shape), tuple(needed[ours].shape)
        if got != shape:
            raise ValueError(f"{theirs!r} has shape {got} but {ours!r} needs {shape}.")
    model.load_state_dict({ours: state[theirs] for ours, theirs in ours_to_theirs.items()}, assign=True)
    return model


def _torchvision_key_map(depth: int, legacy: bool = False) -> dict[str, str]:
    """Our state-dict key -> torchvision's key, for every tensor of the model."""
    fc1, fc2 = ("linear_1", "linear_2") if legacy else ("0", "3")
    per_block = {"norm1": "ln_1", "norm2": "ln_2", "attn.proj": "self_attention.out_proj"}
    per_block |= {"mlp.fc1": f"mlp.{fc1}", "mlp.fc2": f"mlp.{fc2}"}
    pairs = (("patch_embedding.proj", "conv_proj"), ("norm", "encoder.ln"), ("head", "heads.head"))
    names = {f"{ours}.{p}": f"{tv}.{p}" for ours, tv in pairs for p in ("weight", "bias")}
    names["patch_embedding.class_token"] = "class_token"
    names["patch_embedding.pos_embedding"] = "encoder.pos_embedding"
    for i in range(depth):
        theirs = f"encoder.layers.encoder_layer_{i}."
        for ours, tv in per_block.items():
            for p in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{p}"] = f"{theirs}{tv}.{p}"
        names[f"blocks.{i}.attn.to_qkv.weight"] = f"{theirs}self_attention.in_proj_weight"
        names[f"blocks.{i}.attn.to_qkv.bias"] = f"{theirs}self_attention.in_proj_bias"
    return names
