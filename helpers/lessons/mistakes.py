"""The classic mistakes of the your-turn cells (lessons 01-06): what each computes, and its hint.
``_MISTAKES``: (hint id, known-wrong function); ``_ERRORS``: (hint id, regex of the error it raises)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

HINTS = {
    # patchify (lesson 01)
    "channels_last": "Patches are flattened (row, column, channel); permute to (B, H/P, W/P, C, P, P) first.",
    "grid_transposed": "Your patches come column by column; number them row by row, like reading a page.",
    "pixels_transposed": "Inside each patch the pixels are (column, row); flatten as (channel, row, column).",
    "no_permute": "Reshaping without moving the axes mixes patches: permute to (B, H/P, W/P, C, P, P) first.",
    "patches_last": "You returned (B, C*P*P, N), one patch per column, as F.unfold gives it: transpose(1, "
    "2) to get one patch per row, (B, N, C*P*P).",  # solutions 01 shows it
    # [class] token and positions (lesson 01)
    "batch_sized": "The [class] token is sized by a fixed batch: expand it to tokens.shape[0].",
    "class_token_not_expanded": "Right for one image, not a batch: class_token.expand(B, -1, -1).",
    "no_positions": "The position embeddings are missing: add the (1, N+1, D) table after concatenating.",
    "class_token_last": "The [class] token is at the end; it goes in front, as token 0.",
    "class_token_no_position": "The [class] token has a position too: concatenate, then add the whole table.",
    "positions_before_concat": "You added positions before the [class] token: concatenate first.",
    "class_token_added": "The [class] token is one extra token in front: torch.cat([cls, tokens], dim=1).",
    # attention (lesson 02)
    "no_scale": "The scores are not scaled: divide q·kᵀ by sqrt(d) before the softmax.",
    "scale_by_d": "The scores are divided by d; the scale is 1/sqrt(d), with d = q.shape[-1].",
    "scale_after_softmax": "You scaled after the softmax (weights no longer sum to 1): scale before it.",
    "softmax_wrong_axis": "Each query's weights must sum to 1 over the keys: softmax(dim=-1).",
    "no_softmax": "The softmax is missing: weights = softmax(q·kᵀ / sqrt(d)), positive and summing to 1.",
    "values_not_used": "You returned the weights as the output; the output is weights @ v.",
    "not_batched": "Right for one head, wrong for (B, h, T, d): use k.transpose(-2, -1) and softmax(dim=-1).",
    # split and merge heads (lesson 02)
    "split_interleaved": "Each head takes d neighbouring features: x.reshape(B, T, h, d).transpose(1, 2).",
    "split_no_transpose": "Reshaping to (B, h, T, d) mixes tokens and heads: (B, T, h, d), then transpose.",
    "split_missing_transpose": "You stopped at (B, T, h, d); heads go before tokens: transpose(1, 2).",
    "merge_no_transpose": "Reshaping (B, h, T, d) to (B, T, D) mixes tokens and heads: transpose first.",
    "merge_interleaved": "Put each head's d features side by side: x.transpose(1, 2).reshape(B, T, h * d).",
    "merge_view": ".view() fails after transpose (not contiguous in memory): use .reshape(B, T, D).",
    # encoder block (lesson 02)
    "post_norm": "This is post-norm (LayerNorm after each residual addition, as in the original "
    "Transformer); ViT normalises before each sub-layer: x = x + attn(norm1(x)).",  # solutions 02 shows it
    "no_residual": "Both residuals are missing: x = x + attn(norm1(x)), then x = x + mlp(norm2(x)).",
    "no_residual_attention": "The residual around attention is missing: x = x + attn(norm1(x)).",
    "no_residual_mlp": "The residual around the MLP is missing: x = x + mlp(norm2(x)).",
    "residual_after_norm": "Your residuals add the normalised input; add x itself: x = x + attn(norm1(x)).",
    "norms_mixed": "The LayerNorms are mixed up: norm1 goes before attention, norm2 before the MLP.",
    "no_norm": "The LayerNorms are missing: x = x + attn(norm1(x)), then x = x + mlp(norm2(x)).",
    "parallel": "The MLP reads the attention step's output, not the block's input: two steps in turn.",
    # training step (lesson 03)
    "no_zero_grad": "Step 2 is wrong: without optimizer.zero_grad() at the start, gradients accumulate.",
    "no_step": "Gradients were computed but nothing changed: call optimizer.step() after the clipping.",
    "zero_grad_too_late": "zero_grad() ran after loss.backward() and wiped the gradients: call it first.",
    "no_clip": "Unclipped: call nn.utils.clip_grad_norm_(model.parameters(), max_norm) before the step.",
    "clip_after_step": "You clipped after optimizer.step(): clip between loss.backward() and the step.",
    "no_return": "The update is right; now return the loss (loss.item()) so the lesson can plot it.",
    "backward_detached": "Call backward() on the loss tensor itself, not on loss.item() or loss.detach().",
    "backward_non_scalar": "backward() needs one number: the mean loss, not the outputs or per-image losses.",
    # freeze the backbone and build the parameter groups (lesson 04)
    "head_frozen": "The probe froze the head too: after freezing, model.head.requires_grad_(True).",
    "backbone_not_frozen": "The backbone is trainable (no_grad does not freeze): requires_grad_(False).",
    "backbone_frozen_in_finetune": "Fine-tuning found a frozen backbone: requires_grad_(train_backbone).",
    "in_two_groups": "A parameter is in two groups (optimisers refuse that): split named_parameters() once.",
    "embeddings_missing": "The [class] token and positions are in no group: use named_parameters().",
    "param_missing": "Some trainable parameters are in no group, so never learn: each goes in exactly one.",
    "frozen_in_group": "The probe's groups hold frozen parameters: pass only requires_grad ones.",
    "head_in_backbone_group": "The head learns at the slow rate: names starting 'head.' go at lr.",
    "one_learning_rate": "Everything learns at lr: the backbone's group needs 'lr': lr * backbone_lr_scale.",
    "rates_swapped": "The rates are swapped: the head learns at lr, the backbone at lr * backbone_lr_scale.",
    "group_without_lr": "A group has no 'lr' (it would take the optimiser's default): give each its own.",
    "not_groups": "Return a list of dicts, each with 'params' (a list of parameters) and 'lr'.",
    # attention rollout (lesson 05)
    "rollout_no_identity": "The residual path is missing: mix the identity into each block's attention, "
    "0.5 * I + 0.5 * A, before multiplying (Abnar & Zuidema 2020).",
    "rollout_rows_not_normalised": "The rows no longer sum to 1: with I + A, divide each row by its sum "
    "(or use 0.5 * I + 0.5 * A).",
    "rollout_wrong_order": "The blocks are multiplied in the wrong order: block l acts after blocks 1 to "
    "l - 1, so R = A_l @ R (the last block on the left).",
    "rollout_heads_not_averaged": "Average the heads, attn.mean(dim=1), before mixing in the identity; one "
    "head (or the max over heads) is another method.",
    "rollout_last_block_only": "You returned one block's attention; rollout multiplies the (identity-mixed) "
    "attention of every block, first to last.",
}


def _reordered(order: tuple[int, ...]) -> Callable:
    """A patchify that permutes the (B, C, H/P, P, W/P, P) grid by ``order``, then reads (B, N, C*P*P)."""

    def patchify(images, P):
        B, C, H, W = images.shape
        grid = images.reshape(B, C, H // P, P, W // P, P)
        return grid.permute(order).reshape(B, (H // P) * (W // P), C * P * P)

    return patchify


PATCHIFY_MISTAKES = (
    ("channels_last", _reordered((0, 2, 4, 3, 5, 1))),  # (B, H/P, W/P, P, P, C)
    ("grid_transposed", _reordered((0, 4, 2, 1, 3, 5))),  # (B, W/P, H/P, C, P, P)
    ("pixels_transposed", _reordered((0, 2, 4, 1, 5, 3))),  # (B, H/P, W/P, C, P(col), P(row))
    ("no_permute", _reordered((0, 1, 2, 3, 4, 5))),  # images.reshape(B, N, C*P*P)
    ("no_permute", _reordered((0, 1, 2, 4, 3, 5))),  # (B, C, H/P, W/P, P, P) read as (B, N, C*P*P)
    ("patches_last", lambda images, P: F.unfold(images, P, stride=P)),  # (B, C*P*P, N)
)


CLASS_TOKEN_MISTAKES = (
    ("no_positions", lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t], dim=1)),
    ("class_token_last", lambda t, c, p: torch.cat([t, c.expand(len(t), -1, -1)], dim=1) + p),
    ("class_token_no_position", lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p[:, 1:]], dim=1)),
    ("positions_before_concat", lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p[:, :-1]], dim=1)),
    ("class_token_added", lambda t, c, p: t + c + p[:, 1:]),
    ("class_token_added", lambda t, c, p: t + c),
)
# (B, N, D) tokens + (1, N+1, D) positions, before the concatenation
CLASS_TOKEN_ERRORS = (
    ("positions_before_concat", r"must match the size of tensor b .* non-singleton dimension 1"),
)


def _attention_from(weights_of: Callable) -> Callable:
    """An attention whose weights are ``weights_of(q, k)``: returns (weights @ v, weights)."""
    return lambda q, k, v: (weights_of(q, k) @ v, weights_of(q, k))


def _scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return q @ k.transpose(-2, -1)  # (..., T, T), not scaled


def _scaled(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return _scores(q, k) / math.sqrt(q.shape[-1])


ATTENTION_MISTAKES = (
    ("no_scale", _attention_from(lambda q, k: _scores(q, k).softmax(-1))),
    ("scale_by_d", _attention_from(lambda q, k: (_scores(q, k) / q.shape[-1]).softmax(-1))),
    ("scale_after_softmax", _attention_from(lambda q, k: _scores(q, k).softmax(-1) / math.sqrt(q.shape[-1]))),
    ("softmax_wrong_axis", _attention_from(lambda q, k: _scaled(q, k).softmax(-2))),
    ("softmax_wrong_axis", _attention_from(lambda q, k: _scaled(q, k).softmax(0))),
    ("no_softmax", _attention_from(_scaled)),
    ("values_not_used", lambda q, k, v: (_scaled(q, k).softmax(-1),) * 2),
)


SPLIT_MISTAKES = (
    ("split_interleaved", lambda x, h: x.reshape(*x.shape[:2], -1, h).permute(0, 3, 1, 2)),  # (B, T, d, h) ->
    ("split_no_transpose", lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1)),
    ("split_missing_transpose", lambda x, h: x.reshape(*x.shape[:2], h, -1)),  # (B, T, h, d)
)
MERGE_MISTAKES = (
    ("merge_no_transpose", lambda x: x.reshape(x.shape[0], x.shape[2], -1)),
    ("merge_interleaved", lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)),  # (B,T,d,h)
)
MERGE_ERRORS = (("merge_view", r"view size is not compatible"),)


def _steps(first: Callable, second: Callable) -> Callable:
    """A block forward in the learner's two lines: x = first(block, x); x = second(block, x)."""
    return lambda b, x: second(b, first(b, x))


_ATTN_STEP = lambda b, x: x + b.attn(b.norm1(x))  # noqa: E731  (the right first line)
_MLP_STEP = lambda b, x: x + b.mlp(b.norm2(x))  # noqa: E731  (the right second line)
BLOCK_MISTAKES = (
    ("post_norm", _steps(lambda b, x: b.norm1(x + b.attn(x)), lambda b, x: b.norm2(x + b.mlp(x)))),
    ("no_residual", _steps(lambda b, x: b.attn(b.norm1(x)), lambda b, x: b.mlp(b.norm2(x)))),
    ("no_residual_attention", _steps(lambda b, x: b.attn(b.norm1(x)), _MLP_STEP)),
    ("no_residual_mlp", _steps(_ATTN_STEP, lambda b, x: b.mlp(b.norm2(x)))),
    ("residual_after_norm", _steps(lambda b, x: b.norm1(x) + b.attn(b.norm1(x)), _MLP_STEP)),
    ("residual_after_norm", _steps(_ATTN_STEP, lambda b, x: b.norm2(x) + b.mlp(b.norm2(x)))),
    ("norms_mixed", _steps(lambda b, x: x + b.attn(b.norm2(x)), lambda b, x: x + b.mlp(b.norm1(x)))),
    ("norms_mixed", _steps(_ATTN_STEP, lambda b, x: x + b.mlp(b.norm1(x)))),
    ("norms_mixed", _steps(lambda b, x: x + b.attn(b.norm2(x)), _MLP_STEP)),
    ("no_norm", _steps(lambda b, x: x + b.attn(x), lambda b, x: x + b.mlp(x))),
    ("parallel", lambda b, x: x + b.attn(b.norm1(x)) + b.mlp(b.norm2(x))),
)


def _step_variant(zero: str = "start", clip: str = "before_step", step: bool = True, returns: bool = True):
    """A training step with one thing moved or left out: ``zero`` is "start", "after_backward" or "never",
    ``clip`` is "before_step", "after_step" or "never"."""

    def training_step(model, images, labels, loss_fn, optimizer, max_norm):
        if zero == "start":
            optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        if zero == "after_backward":
            optimizer.zero_grad()
        if clip == "before_step":
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if step:
            optimizer.step()
        if clip == "after_step":
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return loss.item() if returns else None

    return training_step


TRAINING_MISTAKES = (  # no_step before zero_grad_too_late: in the loose search, unmoved weights mean no_step
    ("no_zero_grad", _step_variant(zero="never")),
    ("no_step", _step_variant(step=False)),
    ("zero_grad_too_late", _step_variant(zero="after_backward")),
    ("no_clip", _step_variant(clip="never")),
    ("clip_after_step", _step_variant(clip="after_step")),
    ("no_return", _step_variant(returns=False)),
)
TRAINING_ERRORS = (
    ("backward_detached", r"does not require grad|has no attribute 'backward'"),
    ("backward_non_scalar", r"only for scalar outputs"),
)


# --- lesson 06: a threshold for a target false-positive rate (check_threshold) ---------------------------
# (learner's signature: scores = P(fake) of the validation images, is_fake (bool), target_fpr)
THRESHOLD_HINTS = {
    "fpr_counts_fakes": "The false-positive rate counts real photos only: rank the scores where ~is_fake.",
    "flags_at_or_above": "Off by one: flagging is strictly above; return the (k+1)-th highest real score.",
    "threshold_on_fakes": "You took the threshold from the fakes' scores; use the real photos'.",
    "chose_on_test": "Same threshold whatever the scores: choose it from the validation scores it is given.",
}


def _kth_highest(scores: torch.Tensor, fraction: float, shift: int = 0) -> float:
    ranked = scores.sort(descending=True).values
    return float(ranked[math.floor(fraction * len(ranked) + 1e-9) + shift])


THRESHOLD_MISTAKES = (
    ("fpr_counts_fakes", lambda scores, is_fake, fpr: _kth_highest(scores, fpr)),
    ("flags_at_or_above", lambda scores, is_fake, fpr: _kth_highest(scores[~is_fake], fpr, -1)),
    ("threshold_on_fakes", lambda scores, is_fake, fpr: _kth_highest(scores[is_fake], fpr)),
)


# --- Lesson 05: attention rollout -----------------------------------------------------------------------


def _rollout(maps, mix=lambda a: 0.5 * torch.eye(a.shape[-1]) + 0.5 * a, heads=lambda m: m.mean(1),
             normalise=True, last_first=True, blocks=None):  # fmt: skip
    """Attention rollout with one step changed; the defaults give the right answer."""
    rollout = None
    for attn in maps if blocks is None else maps[blocks]:
        a = mix(heads(attn))
        a = a / a.sum(-1, keepdim=True) if normalise else a
        rollout = a if rollout is None else (a @ rollout if last_first else rollout @ a)
    return rollout


ROLLOUT_MISTAKES = (
    ("rollout_no_identity", lambda maps: _rollout(maps, mix=lambda a: a)),
    (
        "rollout_rows_not_normalised",
        lambda maps: _rollout(maps, mix=lambda a: torch.eye(a.shape[-1]) + a, normalise=False),
    ),  # fmt: skip
    ("rollout_wrong_order", lambda maps: _rollout(maps, last_first=False)),
    ("rollout_heads_not_averaged", lambda maps: _rollout(maps, heads=lambda m: m[:, 0])),
    ("rollout_heads_not_averaged", lambda maps: _rollout(maps, heads=lambda m: m.amax(1))),
    ("rollout_last_block_only", lambda maps: _rollout(maps, blocks=slice(-1, None))),
    ("rollout_last_block_only", lambda maps: _rollout(maps, mix=lambda a: a, blocks=slice(-1, None))),
)
