"""The ViT as a figure: the paper's Figure 1 and Eq. 1-4 with the names in helpers.model.vit (lessons 01, 02).
Each box names the module that computes it, read from a ViT built on the ``meta`` device: it cannot drift."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyBboxPatch

from helpers.model.vit import ViT, ViTConfig

# The attribute paths written on the figure (a test checks that each exists in ViT).
MODEL_NAMES = ("patch_embedding", "patch_embedding.proj", "blocks", "norm", "head")
MODEL_PARAMETERS = ("patch_embedding.class_token", "patch_embedding.pos_embedding")
BLOCK_NAMES = ("norm1", "attn", "norm2", "mlp")  # inside blocks[i]

CLASS_COLOUR, PATCH_COLOUR, POSITION_COLOUR = "#f4a259", "#8cb8e0", "#b5d99c"


def _box(ax, x, y, width, height, text, colour="#eeeeee", size=9):
    ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.3", fc=colour, ec="0.3"))
    ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=size)


def _arrow(ax, start, end, text="", left=False):
    """An arrow from ``start`` to ``end``, with ``text`` (a shape) beside it, on the right unless ``left``."""
    ax.annotate("", end, start, arrowprops={"arrowstyle": "-|>", "color": "0.2", "lw": 1.2})
    if text:
        x, y = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        where = {"x": x - 0.8, "ha": "right"} if left else {"x": x + 0.8, "ha": "left"}
        ax.text(where.pop("x"), y, text, **where, fontsize=7.5, va="center", color="0.25", family="monospace")


def _image_and_patches(ax, image: torch.Tensor | None, config: ViTConfig, grid_shown: int = 8) -> None:
    """Bottom row: the image with its patch grid, then the first patches in reading order."""
    P, G = config.patch_size, config.image_size // config.patch_size
    if image is None:  # a plain grid stands in for the photo
        image = torch.linspace(0.3, 0.9, config.image_size).expand(3, config.image_size, -1)
    picture = image[:3].permute(1, 2, 0).clamp(0, 1).numpy()
    ax.imshow(picture, extent=(1, 11, 0.5, 10.5), zorder=2)
    for i in range(G + 1):  # the patch grid
        ax.plot([1, 11], [0.5 + 10 * i / G] * 2, color="white", lw=0.4, zorder=3)
        ax.plot([1 + 10 * i / G] * 2, [0.5, 10.5], color="white", lw=0.4, zorder=3)
    ax.text(6, -0.8, f"image ({config.in_channels}, {config.image_size}, {config.image_size})", ha="center")
    for k in range(min(grid_shown, G * G)):  # patches 0, 1, 2, ... side by side
        row, col = divmod(k, G)
        patch = picture[row * P : (row + 1) * P, col * P : (col + 1) * P]
        left = 15 + 4.2 * k
        ax.imshow(patch, extent=(left, left + 3.4, 3.5, 6.9), zorder=2)
    ax.text(15 + 4.2 * grid_shown + 0.5, 5.2, "...", fontsize=12, va="center")
    caption = f"N = ({config.image_size}/{P})² = {config.num_patches} patches in reading order, "
    ax.text(15, -0.8, caption + f"{config.in_channels}·{P}·{P} = {config.in_channels * P * P} numbers each")
    _arrow(ax, (11.5, 5.2), (14.5, 5.2))


def _token_row(ax, config: ViTConfig, y: float, shown: int = 7) -> None:
    """The sequence z_0: the [class] token (position 0) then the patch tokens, each with its position."""
    for k in range(shown + 1):
        left = 6 + 5 * k
        colour = CLASS_COLOUR if k == 0 else PATCH_COLOUR
        ax.add_patch(FancyBboxPatch((left, y), 3, 2.4, boxstyle="round,pad=0.15", fc=colour, ec="0.3"))
        position = FancyBboxPatch(
            (left - 1.6, y + 0.5), 1.3, 1.4, boxstyle="round,pad=0.1", fc=POSITION_COLOUR
        )
        ax.add_patch(position)
        ax.text(left - 0.95, y + 1.2, str(k), ha="center", va="center", fontsize=7)
        label = "[class]" if k == 0 else f"patch {k - 1}"
        ax.text(left + 1.5, y + 1.2, label, ha="center", va="center", fontsize=6)
    ax.text(6 + 5 * (shown + 1) - 1, y + 1.2, f"... {config.num_patches + 1} tokens", va="center", fontsize=8)


def draw_architecture(config: ViTConfig | None = None, image: torch.Tensor | None = None) -> plt.Figure:
    """The figure for ``config`` (default ViT-B/16), shapes for a batch of B; ``image`` (C, H, W) in
    [0, 1] is drawn at the bottom. Lessons 01 and 02."""
    c = config or ViTConfig()
    with torch.device("meta"):  # the real module names and classes, without memory or initialisation
        model = ViT(c)
    kind = {name: type(model.get_submodule(name)).__name__ for name in MODEL_NAMES}
    block = model.blocks[0]
    block_kind = {name: type(block.get_submodule(name)).__name__ for name in BLOCK_NAMES}
    N, D, L = c.num_patches, c.dim, c.depth

    fig, ax = plt.subplots(figsize=(15, 9.5))
    ax.set(xlim=(-1, 101), ylim=(-3, 66), aspect="auto")
    ax.axis("off")

    # Left: the whole model, bottom to top (the paper's Figure 1)
    _image_and_patches(ax, image, c)
    _arrow(ax, (30, 8), (30, 11.2), f"(B, {c.in_channels}, {c.image_size}, {c.image_size})")
    embedding = (
        f"patch_embedding: {kind['patch_embedding']}   Eq. 1: "
        r"$z_0 = [x_{class};\, x_p^1 E;\, \dots;\, x_p^N E] + E_{pos}$"
        f"\nproj: {kind['patch_embedding.proj']}(kernel = stride = {c.patch_size}) = E, one {D}-vector"
        " per patch"
        f"\nclass_token (1, 1, {D}) in front, expanded to the batch;  pos_embedding (1, {N + 1}, {D}) added"
    )
    _box(ax, 4, 12, 52, 6, embedding, colour="#f6f0e4")
    _arrow(ax, (30, 18.6), (30, 21.4))
    _token_row(ax, c, 22)
    _arrow(ax, (30, 25.2), (30, 28.2), f"z_0: (B, {N + 1}, {D})")
    blocks = f"blocks: {L} x {type(block).__name__}   (Eq. 2-3, opened on the right)"
    _box(ax, 4, 29, 52, 9, blocks + "\nevery token attends to every other token", colour="#e4ecf6", size=10)
    _arrow(ax, (30, 38.6), (30, 41.4), f"z_L: (B, {N + 1}, {D}); the last block updates token 0 only")
    _box(ax, 11, 42, 38, 3.6, f"norm: {kind['norm']} of token 0   Eq. 4: " r"$y = \mathrm{LN}(z_L^0)$")
    _arrow(ax, (30, 46.2), (30, 49.0), f"y: (B, {D})")
    _box(ax, 11, 49.6, 38, 3.6, f"head: {kind['head']}({D} -> {c.num_classes})", colour=CLASS_COLOUR)
    _arrow(ax, (30, 53.8), (30, 56.6), f"class scores: (B, {c.num_classes})")
    ax.plot([56.3, 60], [38, 62], ls=":", color="0.5")
    ax.plot([56.3, 60], [29, 1], ls=":", color="0.5")

    # Right: one encoder block, bottom to top (Eq. 2-3), with its two residual connections
    ax.add_patch(FancyBboxPatch((60, 1), 39, 61, boxstyle="round,pad=0.4", fc="#f7f9fc", ec="0.5", ls="--"))
    ax.text(79.5, 63.5, f"blocks[i]: {type(block).__name__}, i = 0 ... {L - 1}", ha="center", fontsize=10)
    x0, width, mid, side = 75, 20, 85, 97.5
    _arrow(ax, (mid, 2.5), (mid, 6.4), f"z_(l-1): (B, {N + 1}, {D})", left=True)
    _box(ax, x0, 7, width, 3, f"norm1: {block_kind['norm1']}")
    _arrow(ax, (mid, 10.6), (mid, 13.4))
    heads = f"{c.heads} heads of width {c.dim // c.heads}"
    _box(ax, x0, 14, width, 5, f"attn: {block_kind['attn']}\n({heads})", colour="#e4ecf6")
    _arrow(ax, (mid, 19.6), (mid, 23.2))
    ax.text(mid, 24.5, "+", ha="center", va="center", fontsize=16, fontweight="bold")
    _arrow(ax, (mid, 25.8), (mid, 31.4), "z'_l", left=True)
    _box(ax, x0, 32, width, 3, f"norm2: {block_kind['norm2']}")
    _arrow(ax, (mid, 35.6), (mid, 38.4))
    mlp = f"mlp: {block_kind['mlp']}\n({D} -> {c.mlp_dim} -> {D}, GELU)"
    _box(ax, x0, 39, width, 5, mlp, colour="#e4ecf6")
    _arrow(ax, (mid, 44.6), (mid, 48.2))
    ax.text(mid, 49.5, "+", ha="center", va="center", fontsize=16, fontweight="bold")
    _arrow(ax, (mid, 50.8), (mid, 55), f"z_l: (B, {N + 1}, {D})")
    for bottom, top in ((4.5, 24.5), (28, 49.5)):  # the residual paths, around each sub-layer
        ax.plot([mid, side, side], [bottom, bottom, top], color="tab:red", lw=1.2)
        ax.annotate("", (mid + 0.9, top), (side, top), arrowprops={"arrowstyle": "-|>", "color": "tab:red"})
        middle = (bottom + top) / 2
        ax.text(side + 0.7, middle, "residual", rotation=90, color="tab:red", va="center", fontsize=8)
    eq2 = r"$z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}$"
    eq3 = r"$z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$"
    ax.text(61.5, 24.5, "Eq. 2:\n" + eq2, fontsize=10, va="center")
    ax.text(61.5, 49.5, "Eq. 3:\n" + eq3, fontsize=10, va="center")
    note = "pre-norm: a LayerNorm before each sub-layer;\nthe residual path (red) is not\nnormalised inside"
    ax.text(61.5, 58, note, fontsize=8, va="center")

    title = f"helpers.model.vit.ViT, {L} blocks, D = {D}, {c.patch_size}-pixel patches: the paper's Figure 1"
    ax.set_title(title + " and Eq. 1-4 with the names in the code (B = batch size)", fontsize=11)
    fig.tight_layout()
    return fig
