"""The Vision Transformer ("An Image is Worth 16x16 Words", arxiv.org/abs/2010.11929), block by block.

    ViTConfig                -- the sizes (ViT-B/16 by default), PRESETS, get_config
    PatchEmbedding           -- Eq. 1: patches -> tokens, [class] token, position embeddings
    MultiHeadSelfAttention   -- MSA: softmax(q k^T / sqrt(d)) v over several heads
    MLPBlock                 -- the two-layer GELU MLP of every encoder block
    TransformerEncoderBlock  -- Eq. 2-3: pre-norm MSA and MLP with residual connections
    ViT                      -- Eq. 4: stack of blocks, final LayerNorm, head on the [class] token

Layers and initialisation follow torchvision's ``vit_b_16``, so ``ViT.from_torchvision`` gives its outputs.
Shapes: B batch, C channels, H/W height/width, P patch size, N patches, D width, h heads, d = D / h.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from helpers.model import limits as vit_limits

LAYER_NORM_EPS = 1e-6  # torchvision (and the original JAX code) use 1e-6, not PyTorch's default 1e-5


@dataclass
class ViTConfig:
    """Sizes of a Vision Transformer; the defaults are ViT-B/16 (Table 1 of the paper). Lesson 02."""

    image_size: int = 224  # side of the square input image, in pixels
    patch_size: int = 16  # side of one square patch, in pixels ("/16" in ViT-B/16)
    in_channels: int = 3  # colour channels of the input (RGB)
    num_classes: int = 1000  # outputs of the classification head (1000 ImageNet classes)
    dim: int = 768  # D: width of every token ("Hidden size D" in Table 1)
    depth: int = 12  # number of Transformer encoder blocks ("Layers")
    heads: int = 12  # attention heads per block; each head has width dim // heads
    mlp_dim: int = 3072  # hidden width of the MLP inside each block ("MLP size")
    dropout: float = 0.0  # dropout on embeddings, after attention and inside the MLP
    attention_dropout: float = 0.0  # dropout on the attention weights

    def __post_init__(self) -> None:
        for name, value in vit_limits.checked_fields(self).items():
            setattr(self, name, value)  # plain int and float: NumPy's numbers become JSON-able too
        vit_limits.check_sizes_fit(self)  # whole patches, heads that divide dim, bounded N and parameters

    @property
    def num_parameters(self) -> int:
        """How many parameters :class:`ViT` has for this config, counted part by part (lesson 02)."""
        D, M, P, C = self.dim, self.mlp_dim, self.patch_size, self.in_channels
        embedding = C * P * P * D + D + D + (self.num_patches + 1) * D
        block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (D * M + M) + (M * D + D)
        return embedding + self.depth * block + 2 * D + (D * self.num_classes + self.num_classes)

    @property
    def num_patches(self) -> int:
        """N = (image_size / patch_size)^2, the number of patch tokens (without the [class] token)."""
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields (what ``config.json`` files store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> ViTConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error rather than silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown ViTConfig field(s) {unknown}; valid fields are {sorted(known)}.")
        return cls(**d)


PRESETS: dict[str, ViTConfig] = {
    "vit_b16": ViTConfig(),  # as in the paper and torchvision: 86,567,656 parameters with 1000 classes
    # Small enough for a 2-core CPU: 64 tokens + [class], 1.83 M parameters, ~5 s per epoch of ~500 images.
    "vit_tiny": ViTConfig(image_size=64, patch_size=8, num_classes=2, dim=192, depth=6, heads=3, mlp_dim=384),
}


def get_config(name: str, **overrides) -> ViTConfig:
    """``PRESETS[name]`` with fields changed: ``get_config("vit_b16", num_classes=2)``. Lessons 02, 03."""
    if name not in PRESETS:
        raise ValueError(f"Unknown ViT preset {name!r}; valid names are {sorted(PRESETS)}.")
    return replace(PRESETS[name], **overrides)  # replace() returns a new, validated config


class PatchEmbedding(nn.Module):
    """Eq. 1: z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos. A Conv2d with kernel = stride = P multiplies
    each flattened P x P patch by E (P*P*C x D); the [class] token goes in front. Lesson 01."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch_size}.")
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))  # (1, 1, D), zeros as in torchvision
        self.pos_embedding = nn.Parameter(
            torch.empty(1, num_patches + 1, dim).normal_(std=0.02)
        )  # (1, N+1, D)
        # torchvision's init of the patchify stem: truncated normal with std sqrt(1 / fan_in).
        fan_in = in_channels * patch_size * patch_size
        nn.init.trunc_normal_(self.proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if C != self.in_channels:
            raise ValueError(
                f"Got images with {C} channels but this model expects {self.in_channels} (B, C, H, W)."
            )
        if (H, W) != (self.image_size, self.image_size):
            whole = H % self.patch_size == 0 and W % self.patch_size == 0
            why = "" if whole else f" ({H}x{W} is not a multiple of the patch size {self.patch_size})"
            raise ValueError(
                f"Got {H}x{W} images but this model expects {self.image_size}x{self.image_size}{why}. "
                f"Resize the images to {self.image_size}, or build the model with image_size={H}."
            )
        x = self.proj(x)  # (B, D, H/P, W/P): one D-vector per patch
        x = x.flatten(2).transpose(1, 2)  # (B, N, D) with N = (H/P) * (W/P), row by row
        cls = self.class_token.expand(B, -1, -1)  # (B, 1, D), a view: no new parameters per batch
        x = torch.cat([cls, x], dim=1)  # (B, N+1, D)
        return x + self.pos_embedding  # (B, N+1, D)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention (MSA, Appendix A): softmax(q k^T / sqrt(d)) v in one fused kernel;
    :meth:`attention_weights` writes the weights out (lesson 05 draws them). Lesson 02."""

    def __init__(self, dim: int, heads: int, attention_dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}.")
        self.heads = heads
        self.head_dim = dim // heads  # d
        self.scale = self.head_dim**-0.5  # 1 / sqrt(d)
        self.attention_dropout = attention_dropout
        self.to_qkv = nn.Linear(dim, 3 * dim)  # rows: [W_q; W_k; W_v], like torchvision's in_proj_weight
        self.proj = nn.Linear(dim, dim)  # torchvision's out_proj
        # torchvision's init: xavier on the stacked qkv matrix, zero biases, default init for proj.weight
        nn.init.xavier_uniform_(self.to_qkv.weight)
        nn.init.zeros_(self.to_qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (B, N, D) -> queries, keys and values, each (B, h, N, d)."""
        B, N, _ = x.shape  # here N counts all tokens, [class] included
        qkv = self.to_qkv(x).view(B, N, 3, self.heads, self.head_dim)  # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, N, d), views: no copies
        return q, k, v

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) written out: (B, h, N, N), row i = how token i spreads its attention."""
        q, k, _ = self.split_heads(x)
        scores = (q * self.scale) @ k.transpose(-2, -1)  # (B, h, N, N): how much query i matches key j
        return scores.softmax(dim=-1)  # each row sums to 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.split_heads(x)
        p = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, N, d): softmax(q k^T/sqrt(d)) v
        out = out.transpose(1, 2).reshape(B, N, D)  # (B, N, h*d): concatenate the heads
        return self.proj(out)  # (B, N, D)

    def forward_class_token(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[:, :1]`` for less work, (B, 1, D): only the [class] token asks (query 0)."""
        B, _, D = x.shape
        q, k, v = self.split_heads(x)
        p = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q[:, :, :1], k, v, dropout_p=p)  # (B, h, 1, d)
        return self.proj(out.transpose(1, 2).reshape(B, 1, D))  # (B, 1, D)


class MLPBlock(nn.Module):
    """Each block's MLP: Linear(D -> mlp_dim), GELU, dropout, Linear(mlp_dim -> D), dropout. Lesson 02."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.act = nn.GELU()  # exact (erf) GELU, as in the paper and torchvision
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.drop2 = nn.Dropout(dropout)
        for layer in (self.fc1, self.fc2):  # torchvision's MLPBlock init
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))  # (B, N, mlp_dim)
        return self.drop2(self.fc2(x))  # (B, N, D)


class TransformerEncoderBlock(nn.Module):
    """Eq. 2-3, LayerNorm *before* each sub-layer ("pre-norm"): z' = MSA(LN(z)) + z, z = MLP(LN(z')) + z'.
    Lesson 02."""

    def __init__(
        self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0, attention_dropout: float = 0.0
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = MultiHeadSelfAttention(dim, heads, attention_dropout)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.attn(self.norm1(x))) + x  # residual around attention, (B, N, D)
        return self.mlp(self.norm2(x)) + x  # residual around the MLP

    def forward_class_token(self, x: torch.Tensor) -> torch.Tensor:
        """The output for the [class] token only, (B, 1, D): all the last block needs (lesson 02)."""
        x_cls = self.drop(self.attn.forward_class_token(self.norm1(x))) + x[:, :1]  # (B, 1, D)
        return self.mlp(self.norm2(x_cls)) + x_cls


class ViT(nn.Module):
    """Patch embedding, ``depth`` encoder blocks, LayerNorm, a zero-initialised head on the [class] token
    (Eq. 4), as torchvision's ``VisionTransformer``. Lesson 02."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = replace(config)  # own copy: reset_head changes num_classes
        c = self.config
        self.patch_embedding = PatchEmbedding(c.image_size, c.patch_size, c.in_channels, c.dim)
        self.dropout = nn.Dropout(c.dropout)  # on the embedded tokens, as in torchvision
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(c.dim, c.heads, c.mlp_dim, c.dropout, c.attention_dropout)
            for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.dim, eps=LAYER_NORM_EPS)
        self.head = self._zero_head(c.dim, c.num_classes)

    @staticmethod
    def _zero_head(dim: int, num_classes: int) -> nn.Linear:
        head = nn.Linear(dim, num_classes)
        nn.init.zeros_(head.weight)  # zero head, as in torchvision and the paper's fine-tuning recipe
        nn.init.zeros_(head.bias)
        return head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the [class] token after the final LayerNorm, (B, D): the head's input."""
        x = self.dropout(self.patch_embedding(x))  # (B, N+1, D)
        for block in self.blocks[:-1]:
            x = block(x)  # (B, N+1, D)
        # The head reads only the [class] token, so the last block needs to update only that token.
        x = self.blocks[-1].forward_class_token(x)  # (B, 1, D)
        return self.norm(x[:, 0])  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> class scores (logits), (B, num_classes)."""
        return self.head(self.forward_features(x))

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Softmaxed attention weights of every block, each (B, heads, N+1, N+1); token 0 is [class].
        Lesson 05; call it under ``torch.no_grad()`` when only plotting."""
        maps = []
        x = self.dropout(self.patch_embedding(x))  # (B, N+1, D)
        for block in self.blocks:
            maps.append(block.attn.attention_weights(block.norm1(x)))  # (B, h, N+1, N+1)
            x = block(x)  # (B, N+1, D)
        return maps

    def reset_head(self, num_classes: int) -> None:
        """Replace the head with a new zero-initialised one with ``num_classes`` outputs (for fine-tuning)."""
        old = self.head
        self.head = self._zero_head(self.config.dim, num_classes).to(old.weight.device, old.weight.dtype)
        self.config.num_classes = num_classes

    @classmethod
    def from_torchvision(cls, model_or_state_dict: nn.Module | Mapping, image_size: int | None = None) -> ViT:
        """A ViT with a torchvision ``VisionTransformer``'s weights (module or state dict), key by key;
        ``image_size`` resizes the position embeddings. Lessons 02 and 04 (:mod:`.torchvision_weights`)."""
        from helpers.model.torchvision_weights import vit_from_torchvision  # it imports this module

        return vit_from_torchvision(model_or_state_dict, image_size)


def interpolate_position_embedding(pos_embedding: torch.Tensor, new_grid: int) -> torch.Tensor:
    """Resize (1, 1 + G*G, D) position embeddings to (1, 1 + new_grid^2, D) for another image size:
    bicubic on the G x G grid, the [class] token's kept (the paper's Section 3.2). Lesson 04."""
    _, n, dim = pos_embedding.shape
    grid = math.isqrt(n - 1)
    cls_pos, patch_pos = pos_embedding[:, :1], pos_embedding[:, 1:]  # (1, 1, D), (1, G*G, D)
    patch_pos = patch_pos.transpose(1, 2).reshape(1, dim, grid, grid)  # (1, D, G, G)
    patch_pos = F.interpolate(patch_pos, size=new_grid, mode="bicubic", align_corners=True)  # (1, D, G', G')
    patch_pos = patch_pos.reshape(1, dim, new_grid * new_grid).transpose(1, 2)  # (1, G'*G', D)
    return torch.cat([cls_pos, patch_pos], dim=1)  # (1, 1 + G'*G', D)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``). Lessons 01 to 06."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
