"""Loading torchvision's ViT weights into the course's ViT (lessons 02 and 04).

torchvision names the same tensors differently (``encoder.layers.encoder_layer_0.ln_1`` is our
``blocks.0.norm1``) and stores the query, key and value projections as one ``in_proj_weight``, as our
``to_qkv`` does. :func:`vit_from_torchvision` reads the sizes from the weights, maps every key, checks
every shape (:mod:`helpers.model.limits`) and copies the tensors; ``ViT.from_torchvision`` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from helpers.model import limits as vit_limits
from helpers.model.vit import ViT, ViTConfig, interpolate_position_embedding


def vit_from_torchvision(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    image_size: int | None = None,
    *,
    heads: int | None = None,
) -> ViT:
    """Build a ViT with the weights of a torchvision ``VisionTransformer`` (a module or its state dict).

    The sizes are read from the weights: ``dim``, ``in_channels`` and ``patch_size`` from
    ``conv_proj.weight``, ``depth`` from the number of encoder layers, ``mlp_dim`` from the first
    MLP layer, ``num_classes`` from ``heads.head.weight`` and the image size from the number of
    position embeddings. A state dict does not record the number of heads: it is taken from the
    module when one is given, else from ``heads=``, else assumed to be ``dim // 64`` (heads of
    width 64, true for all of torchvision's ViTs). Both the current MLP keys (``mlp.0``, ``mlp.3``)
    and the legacy ones (``mlp.linear_1``, ``mlp.linear_2``) load.

    With ``image_size`` different from the weights' own, the position embeddings of the patches
    are resized on their 2-D grid exactly like torchvision's ``interpolate_embeddings`` (bicubic,
    align_corners=True; the [class] token's embedding is kept). The new model is on the CPU, in
    training mode, with its own copy of the weights.
    """
    dropout = attention_dropout = 0.0
    if isinstance(model_or_state_dict, nn.Module):
        module = model_or_state_dict
        if not hasattr(module, "conv_proj"):
            raise TypeError(
                f"from_torchvision expects torchvision's VisionTransformer or its state dict, "
                f"got a {type(module).__name__}."
            )
        state = module.state_dict()
        if heads is None:
            heads = module.encoder.layers[0].self_attention.num_heads
        dropout, attention_dropout = module.dropout, module.attention_dropout
    else:
        state = dict(model_or_state_dict)
    # Copies (never views) of the weights, so training our model cannot change the source model.
    state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    # Which keys to expect: the number of blocks and the MLP's names (current or legacy) say it.
    depth = sum(1 for k in state if k.startswith("encoder.layers.") and k.endswith(".ln_1.weight"))
    legacy = "encoder.layers.encoder_layer_0.mlp.linear_1.weight" in state
    ours_to_theirs = _torchvision_key_map(max(depth, 1), legacy)
    vit_limits.check_torchvision_keys(state, expected=ours_to_theirs.values())  # none missing, none extra
    # The sizes, read from the shapes of the weights.
    dim, in_channels, patch_size, _ = state["conv_proj.weight"].shape
    mlp_dim = state[ours_to_theirs["blocks.0.mlp.fc1.weight"]].shape[0]
    num_classes = state["heads.head.weight"].shape[0]
    pos = state["encoder.pos_embedding"]  # (1, N+1, D)
    grid = math.isqrt(pos.shape[1] - 1) if pos.ndim == 3 else 0  # G: patches per side
    if pos.ndim != 3 or pos.shape[0] != 1 or grid * grid != pos.shape[1] - 1:
        raise ValueError(f"'encoder.pos_embedding' has shape {tuple(pos.shape)}; expected (1, G*G + 1, D).")
    if heads is None and dim % 64 != 0:
        raise ValueError(f"Cannot guess the number of heads for dim={dim}; pass heads= or the module.")
    heads = dim // 64 if heads is None else heads  # heads of width 64, as in every torchvision ViT

    config = ViTConfig(
        image_size=image_size or grid * patch_size,
        patch_size=patch_size,
        in_channels=in_channels,
        num_classes=num_classes,
        dim=dim,
        depth=depth,
        heads=heads,
        mlp_dim=mlp_dim,
        dropout=dropout,
        attention_dropout=attention_dropout,
    )
    new_grid = config.image_size // patch_size
    if new_grid != grid:
        state["encoder.pos_embedding"] = interpolate_position_embedding(pos, new_grid)

    with torch.device("meta"):  # no memory and no random init: every tensor is replaced below
        model = ViT(config)
    new_state = {ours: state[theirs] for ours, theirs in ours_to_theirs.items()}
    vit_limits.check_weight_shapes(new_state, model.state_dict(), ours_to_theirs)  # before taking them
    model.load_state_dict(new_state, assign=True)  # take the tensors themselves (off the meta device)
    return model


def _torchvision_key_map(depth: int, legacy: bool = False) -> dict[str, str]:
    """Our state-dict key -> torchvision's key, for every tensor of the model."""
    fc1, fc2 = ("linear_1", "linear_2") if legacy else ("0", "3")
    per_block = {"norm1": "ln_1", "norm2": "ln_2", "attn.proj": "self_attention.out_proj"}
    per_block |= {"mlp.fc1": f"mlp.{fc1}", "mlp.fc2": f"mlp.{fc2}"}
    names = {
        "patch_embedding.proj.weight": "conv_proj.weight",
        "patch_embedding.proj.bias": "conv_proj.bias",
        "patch_embedding.class_token": "class_token",
        "patch_embedding.pos_embedding": "encoder.pos_embedding",
        "norm.weight": "encoder.ln.weight",
        "norm.bias": "encoder.ln.bias",
        "head.weight": "heads.head.weight",
        "head.bias": "heads.head.bias",
    }
    for i in range(depth):
        theirs = f"encoder.layers.encoder_layer_{i}."
        for ours, tv in per_block.items():
            for p in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{p}"] = f"{theirs}{tv}.{p}"
        names[f"blocks.{i}.attn.to_qkv.weight"] = f"{theirs}self_attention.in_proj_weight"
        names[f"blocks.{i}.attn.to_qkv.bias"] = f"{theirs}self_attention.in_proj_bias"
    return names
