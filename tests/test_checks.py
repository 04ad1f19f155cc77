"""Tests for helpers/lessons/checks.py and detector_checks.py, the checks of the your-turn cells (issue 14).

Every check must accept right answers written in several ways, reject each mistake it claims to catch
with that mistake's hint, and treat a stub as skipped. The wrong answers below are written as a learner
would write them, not taken from the known-wrong versions inside helpers.lessons.checks: a mistake must be
recognised by what it computes, whatever the code looks like.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.lessons import checks, detector_checks, mistakes
from helpers.model import pretrained
from helpers.model.vit import MultiHeadSelfAttention, PatchEmbedding, TransformerEncoderBlock
from helpers.train import recipes

pytestmark = pytest.mark.usefixtures("one_thread")


def _unfolded(images, P):
    return images.unfold(2, P, P).unfold(3, P, P)  # (B, C, H/P, W/P, P, P), lesson 01's way


def _flat_patches(x, images, P):
    return x.reshape(images.shape[0], -1, images.shape[1] * P * P)


# --- lesson 01: patchify ----------------------------------------------------------------------

PATCHIFY_RIGHT = [
    checks.reference_patchify,
    lambda im, P: F.unfold(im, kernel_size=P, stride=P).transpose(1, 2),
    lambda im, P: nn.Unfold(P, stride=P)(im).mT,
    lambda im, P: _flat_patches(_unfolded(im, P).permute(0, 2, 3, 1, 4, 5), im, P),
]
PATCHIFY_WRONG = [
    ("channels_last", lambda im, P: _flat_patches(_unfolded(im, P).permute(0, 2, 3, 4, 5, 1), im, P)),
    ("grid_transposed", lambda im, P: _flat_patches(_unfolded(im, P).permute(0, 3, 2, 1, 4, 5), im, P)),
    ("pixels_transposed", lambda im, P: _flat_patches(_unfolded(im, P).permute(0, 2, 3, 1, 5, 4), im, P)),
    (
        "pixels_transposed",
        lambda im, P: _flat_patches(im.unfold(3, P, P).unfold(2, P, P).permute(0, 2, 3, 1, 4, 5), im, P),
    ),
    ("no_permute", lambda im, P: _flat_patches(im, im, P)),
    ("no_permute", lambda im, P: _flat_patches(_unfolded(im, P), im, P)),
    ("patches_last", lambda im, P: F.unfold(im, kernel_size=P, stride=P)),
    ("shape", lambda im, P: _unfolded(im, P).permute(0, 2, 3, 1, 4, 5).flatten(3)),  # (B, H/P, W/P, C*P*P)
    ("error", lambda im, P: _flat_patches(_unfolded(im, 16), im, 16)),  # patch size 16 hard-coded
]

# --- lesson 01: [class] token and positions -----------------------------------------------------


def class_token_repeat(tokens, class_token, pos_embedding):
    cls = class_token.repeat(tokens.size(0), 1, 1)  # a copy instead of a view: also right
    return torch.cat((cls, tokens), dim=-2).add(pos_embedding)


CLASS_TOKEN_RIGHT = [checks.reference_add_class_token, class_token_repeat]
CLASS_TOKEN_WRONG = [
    ("batch_sized", lambda t, c, p: torch.cat([c.expand(32, -1, -1), t], dim=1) + p),  # the tutorial's 32
    ("batch_sized", lambda t, c, p: torch.cat([c.expand(3, -1, -1), t], dim=1) + p),  # lesson 01's B = 3
    ("batch_sized", lambda t, c, p: torch.cat([c.repeat(2, 1, 1), t], dim=1) + p),  # right for B = 2 only
    ("class_token_not_expanded", lambda t, c, p: torch.cat([c, t], dim=1) + p),
    ("no_positions", lambda t, c, p: torch.cat([c.repeat(len(t), 1, 1), t], dim=1)),
    ("class_token_last", lambda t, c, p: torch.cat([t, c.repeat(len(t), 1, 1)], dim=1) + p),
    ("class_token_no_position", lambda t, c, p: torch.cat([c.repeat(len(t), 1, 1), t + p[:, 1:]], dim=1)),
    (
        "positions_before_concat",
        lambda t, c, p: torch.cat([c.repeat(len(t), 1, 1), t + p[:, : t.shape[1]]], 1),
    ),
    ("positions_before_concat", lambda t, c, p: torch.cat([c.repeat(len(t), 1, 1), t + p], dim=1)),  # raises
    ("class_token_added", lambda t, c, p: t + c + p[:, 1:]),
]

# --- lesson 02: attention -----------------------------------------------------------------------


def attention_einsum(q, k, v):
    weights = torch.einsum("...id,...jd->...ij", q, k).div(math.sqrt(q.shape[-1])).softmax(dim=-1)
    return torch.einsum("...ij,...jd->...id", weights, v), weights


def attention_fused(q, k, v):
    weights = torch.softmax(q @ k.mT * q.size(-1) ** -0.5, dim=-1)
    return F.scaled_dot_product_attention(q, k, v), weights


def _scores(q, k):  # q·kᵀ for one head, written with the batch dimension
    return torch.bmm(q, k.transpose(1, 2))


def _with_values(weights, v):
    return weights @ v, weights


ATTENTION_RIGHT = [checks.reference_attention, attention_einsum, attention_fused]
ATTENTION_WRONG = [
    ("no_scale", lambda q, k, v: _with_values(_scores(q, k).softmax(dim=-1), v)),
    ("scale_by_d", lambda q, k, v: _with_values((_scores(q, k) / q.shape[-1]).softmax(dim=-1), v)),
    ("scale_after_softmax", lambda q, k, v: _with_values(_scores(q, k).softmax(-1) / q.shape[-1] ** 0.5, v)),
    (
        "softmax_wrong_axis",
        lambda q, k, v: _with_values((_scores(q, k) / q.shape[-1] ** 0.5).softmax(dim=1), v),
    ),
    (
        "softmax_wrong_axis",
        lambda q, k, v: _with_values(F.softmax(_scores(q, k) / q.shape[-1] ** 0.5, dim=0), v),
    ),
    ("no_softmax", lambda q, k, v: _with_values(_scores(q, k) / q.shape[-1] ** 0.5, v)),
    ("values_not_used", lambda q, k, v: ((w := (_scores(q, k) / q.shape[-1] ** 0.5).softmax(-1)), w)),
    (
        "not_batched",
        lambda q, k, v: _with_values((q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).softmax(-1), v),
    ),
    ("not_batched", lambda q, k, v: _with_values((q @ k.mT / q.shape[-1] ** 0.5).softmax(dim=2), v)),
    ("count", lambda q, k, v: checks.reference_attention(q, k, v)[0]),  # the output only
]

# --- lesson 02: split and merge heads -------------------------------------------------------------


def split_view(x, heads):
    B, T, D = x.shape
    return x.view(B, T, heads, D // heads).permute(0, 2, 1, 3)


def merge_contiguous_view(x):
    B, h, T, d = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, h * d)


HEADS_RIGHT = [
    (checks.reference_split_heads, checks.reference_merge_heads),
    (split_view, merge_contiguous_view),
    (lambda x, h: x.unflatten(-1, (h, -1)).transpose(1, 2), lambda x: x.transpose(1, 2).flatten(2)),
]
merge = checks.reference_merge_heads
HEADS_WRONG = [
    ("split_interleaved", (lambda x, h: x.view(*x.shape[:2], -1, h).permute(0, 3, 1, 2), merge)),
    # interleaved both ways: the pair undoes itself, but the heads still see the wrong features
    (
        "split_interleaved",
        (
            lambda x, h: x.unflatten(-1, (-1, h)).permute(0, 3, 1, 2),
            lambda x: x.permute(0, 2, 3, 1).flatten(2),
        ),
    ),
    ("split_no_transpose", (lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), merge)),
    ("split_missing_transpose", (lambda x, h: x.view(*x.shape[:2], h, -1), merge)),
    ("merge_no_transpose", (split_view, lambda x: x.reshape(x.shape[0], x.shape[2], -1))),
    ("merge_interleaved", (split_view, lambda x: x.permute(0, 2, 3, 1).flatten(2))),
    ("merge_view", (split_view, lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1))),
]

# --- lesson 02: encoder block -------------------------------------------------------------------


def block_two_steps(self, x):
    h = self.norm1(x)
    x = torch.add(x, self.attn(h))
    h = self.norm2(x)
    return torch.add(x, self.mlp(h))


def block_post_norm(self, x):
    x = self.norm1(x + self.attn(x))
    return self.norm2(x + self.mlp(x))


def block_residual_of_normed(self, x):
    x = self.norm1(x)
    x = x + self.attn(x)
    return x + self.mlp(self.norm2(x))


def block_norms_swapped(self, x):
    x = x + self.attn(self.norm2(x))
    return x + self.mlp(self.norm1(x))


BLOCK_RIGHT = [checks.reference_block_forward, block_two_steps, lambda b, x: b(x)]
BLOCK_WRONG = [
    ("post_norm", block_post_norm),
    ("no_residual", lambda b, x: b.mlp(b.norm2(b.attn(b.norm1(x))))),
    ("no_residual_attention", lambda b, x: (a := b.attn(b.norm1(x))) + b.mlp(b.norm2(a))),
    ("no_residual_mlp", lambda b, x: b.mlp(b.norm2(x + b.attn(b.norm1(x))))),
    ("residual_after_norm", block_residual_of_normed),
    ("norms_mixed", block_norms_swapped),
    ("norms_mixed", lambda b, x: (y := x + b.attn(b.norm1(x))) + b.mlp(b.norm1(y))),  # norm1 twice
    ("no_norm", lambda b, x: (y := x + b.attn(x)) + b.mlp(y)),
    ("parallel", lambda b, x: x + b.attn(b.norm1(x)) + b.mlp(b.norm2(x))),
    ("shape", lambda b, x: block_two_steps(b, x)[:, 0]),  # the [class] token only
]

# --- lesson 03: one training step ---------------------------------------------------------------


def step_zero_grad_at_end(model, images, labels, loss_fn, optimizer, max_norm):
    loss = loss_fn(model(images), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
    optimizer.step()
    model.zero_grad()  # at the end instead of the start: also right
    return loss  # a tensor instead of a float: also right


def step_zeros_not_none(model, images, labels, loss_fn, optimizer, max_norm):
    optimizer.zero_grad(set_to_none=False)
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def make_step(order: list[str]):
    """A training step that runs the named actions in the given order, as a learner might write them."""

    def step(model, images, labels, loss_fn, optimizer, max_norm):
        result = None
        for action in order:
            if action == "zero":
                optimizer.zero_grad()
            elif action == "forward":
                loss = loss_fn(model(images), labels)
                result = loss.item()
            elif action == "backward":
                loss.backward()
            elif action == "detached_backward":
                loss.detach().backward()
            elif action == "item_backward":
                loss.item().backward()
            elif action == "per_image_backward":
                F.cross_entropy(model(images), labels, reduction="none").backward()
            elif action == "logits_backward":
                model(images).backward()
            elif action == "clip":
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            elif action == "step":
                optimizer.step()
            elif action == "forget_result":
                result = None
        return result

    return step


TRAINING_RIGHT = [
    checks.reference_training_step,
    step_zero_grad_at_end,
    step_zeros_not_none,
    make_step(["forward", "zero", "backward", "clip", "step"]),  # zero_grad after the forward: right
]
TRAINING_WRONG = [
    ("no_zero_grad", make_step(["forward", "backward", "clip", "step"])),
    ("no_step", make_step(["zero", "forward", "backward", "clip"])),
    ("no_step", make_step(["zero", "forward", "step", "backward", "clip"])),  # step before backward
    ("zero_grad_too_late", make_step(["forward", "backward", "zero", "clip", "step"])),
    ("no_clip", make_step(["zero", "forward", "backward", "step"])),
    ("no_clip", make_step(["zero", "clip", "forward", "backward", "step"])),  # clipped before backward
    ("clip_after_step", make_step(["zero", "forward", "backward", "step", "clip"])),
    ("no_return", make_step(["zero", "forward", "backward", "clip", "step", "forget_result"])),
    ("backward_detached", make_step(["zero", "forward", "detached_backward", "clip", "step"])),
    ("backward_detached", make_step(["zero", "forward", "item_backward", "clip", "step"])),
    ("backward_non_scalar", make_step(["zero", "forward", "per_image_backward", "clip", "step"])),
    ("backward_non_scalar", make_step(["zero", "forward", "logits_backward", "clip", "step"])),
]

# --- lesson 04: freeze the backbone and build the parameter groups ------------------------------------


def _split(model, is_head=lambda name: name.startswith("head.")):
    """(head, trainable rest) parameters, the way a learner filters named_parameters()."""
    named = list(model.named_parameters())
    return [p for n, p in named if is_head(n)], [p for n, p in named if not is_head(n) and p.requires_grad]


def freeze_with_helpers(model, lr, backbone_lr_scale, train_backbone):
    recipe = recipes.get_recipe("finetune", lr=lr, backbone_lr_scale=backbone_lr_scale)
    recipe = dataclasses.replace(recipe, train_backbone=train_backbone)
    pretrained.freeze_for_recipe(model, recipe)
    return recipes.param_groups(model, recipe)  # four groups: with and without weight decay


def freeze_by_flag(model, lr, backbone_lr_scale, train_backbone):
    for name, p in model.named_parameters():
        p.requires_grad = train_backbone or name.startswith("head")
    head, backbone = _split(model)
    return [{"params": head, "lr": lr}, {"params": backbone, "lr": lr * backbone_lr_scale}]  # may be empty


def make_freeze(freeze="right", groups="right"):
    """A freeze_and_group with one mistake in the freezing or in the groups."""

    def freeze_and_group(model, lr, backbone_lr_scale, train_backbone):
        if freeze == "right":
            model.requires_grad_(train_backbone)
            model.head.requires_grad_(True)
        elif freeze == "head_too":
            model.requires_grad_(train_backbone)
        elif freeze == "no_grad":
            with torch.no_grad():  # does not freeze anything
                model.head.requires_grad_(True)
        elif freeze == "always":
            model.requires_grad_(False)
            model.head.requires_grad_(True)
        elif freeze == "torchvision_name":
            model.heads.head.requires_grad_(True)
        head, backbone = _split(model)
        slow = lr * backbone_lr_scale
        if groups == "right":
            return [{"params": backbone, "lr": slow}, {"params": head, "lr": lr}]
        if groups == "all_parameters":
            return [{"params": list(model.parameters()), "lr": slow}, {"params": head, "lr": lr}]
        if groups == "layers_only":
            layers = (nn.Linear, nn.Conv2d, nn.LayerNorm)
            found = [m for m in model.modules() if isinstance(m, layers) and m is not model.head]
            return [
                {"params": [p for m in found for p in m.parameters()], "lr": slow},
                {"params": head, "lr": lr},
            ]
        if groups == "no_final_norm":
            rest = [*model.patch_embedding.parameters(), *model.blocks.parameters()]
            return [{"params": [p for p in rest if p.requires_grad], "lr": slow}, {"params": head, "lr": lr}]
        if groups == "frozen_too":
            rest = [p for n, p in model.named_parameters() if not n.startswith("head.")]
            return [{"params": rest, "lr": slow}, {"params": head, "lr": lr}]
        if groups == "torchvision_name":
            heads, rest = _split(model, lambda name: name.startswith("heads."))
            return [{"params": rest, "lr": slow}, {"params": heads, "lr": lr}]
        if groups == "one_rate":
            return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
        if groups == "swapped":
            return [{"params": backbone, "lr": lr}, {"params": head, "lr": slow}]
        if groups == "no_lr":
            return [{"params": backbone, "lr": slow}, {"params": head}]
        if groups == "parameters":
            return [p for p in model.parameters() if p.requires_grad]
        if groups == "divided":
            return [{"params": backbone, "lr": lr / backbone_lr_scale}, {"params": head, "lr": lr}]
        raise ValueError(groups)

    return freeze_and_group


FREEZE_RIGHT = [detector_checks.reference_freeze_and_group, freeze_with_helpers, freeze_by_flag]
FREEZE_WRONG = [
    ("head_frozen", make_freeze(freeze="head_too")),
    ("backbone_not_frozen", make_freeze(freeze="no_grad")),
    ("backbone_frozen_in_finetune", make_freeze(freeze="always")),
    ("in_two_groups", make_freeze(groups="all_parameters")),
    ("embeddings_missing", make_freeze(groups="layers_only")),
    ("param_missing", make_freeze(groups="no_final_norm")),
    ("frozen_in_group", make_freeze(groups="frozen_too")),
    ("head_in_backbone_group", make_freeze(groups="torchvision_name")),
    ("one_learning_rate", make_freeze(groups="one_rate")),
    ("rates_swapped", make_freeze(groups="swapped")),
    ("group_without_lr", make_freeze(groups="no_lr")),
    ("not_groups", make_freeze(groups="parameters")),
    ("values", make_freeze(groups="divided")),
    ("error", make_freeze(freeze="torchvision_name")),  # ViT has no .heads: AttributeError
]

# --- Lesson 05: attention rollout -------------------------------------------------------------------


def rollout_by_loop(maps):  # right: one image at a time, identity added then divided by 2
    out = []
    for b in range(maps[0].shape[0]):
        r = torch.eye(maps[0].shape[-1])
        for attn in maps:
            r = ((torch.eye(len(r)) + attn[b].mean(0)) / 2) @ r
        out.append(r)
    return torch.stack(out)


ROLLOUT_RIGHT = [detector_checks.reference_attention_rollout, rollout_by_loop]
ROLLOUT_WRONG = [(hint, wrong) for hint, wrong in mistakes.ROLLOUT_MISTAKES]

# --- the tests ----------------------------------------------------------------------------------

REFERENCES = {
    "patchify": checks.reference_patchify,
    "class_token": checks.reference_add_class_token,
    "attention": checks.reference_attention,
    "heads": (checks.reference_split_heads, checks.reference_merge_heads),
    "encoder_block": checks.reference_block_forward,
    "training_step": checks.reference_training_step,
    "freeze_and_group": detector_checks.reference_freeze_and_group,
    "attention_rollout": detector_checks.reference_attention_rollout,
}
CASES = {  # check name -> (check, right answers, (hint, wrong answer) pairs)
    "patchify": (checks.check_patchify, PATCHIFY_RIGHT, PATCHIFY_WRONG),
    "class_token": (checks.check_class_token, CLASS_TOKEN_RIGHT, CLASS_TOKEN_WRONG),
    "attention": (checks.check_attention, ATTENTION_RIGHT, ATTENTION_WRONG),
    "heads": (lambda pair, **kw: checks.check_heads(*pair, **kw), HEADS_RIGHT, HEADS_WRONG),
    "encoder_block": (checks.check_encoder_block, BLOCK_RIGHT, BLOCK_WRONG),
    "training_step": (checks.check_training_step, TRAINING_RIGHT, TRAINING_WRONG),
    "freeze_and_group": (detector_checks.check_freeze_and_group, FREEZE_RIGHT, FREEZE_WRONG),
    "attention_rollout": (detector_checks.check_attention_rollout, ROLLOUT_RIGHT, ROLLOUT_WRONG),
}
RIGHT = [
    pytest.param(name, i, id=f"{name}-{i}")
    for name, (_, right, _) in CASES.items()
    for i in range(len(right))
]
WRONG = [
    pytest.param(name, i, id=f"{name}-{hint}-{i}")
    for name, (_, _, wrong) in CASES.items()
    for i, (hint, _) in enumerate(wrong)
]


@pytest.mark.parametrize(("name", "index"), RIGHT)
def test_check_accepts_a_right_answer_and_returns_it(name, index, capsys):
    check, right, _ = CASES[name]
    answer = right[index]
    assert check(answer, strict=True) == answer  # the same function (for heads: the same pair)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(("name", "index"), WRONG)
def test_check_names_the_mistake(name, index):
    check, _, wrong = CASES[name]
    hint, answer = wrong[index]
    with pytest.raises(checks.CheckFailed) as failure:
        check(answer, strict=True)
    assert failure.value.hint == hint, failure.value.message
    if hint in checks.HINTS:
        assert checks.HINTS[hint] in failure.value.message


def test_every_hint_is_tested():
    tested = {hint for _, _, wrong in CASES.values() for hint, _ in wrong}
    assert set(checks.HINTS) <= tested, f"hints without a test: {sorted(set(checks.HINTS) - tested)}"


def _raises(*args):
    raise NotImplementedError("your turn")


def _ellipsis(*args): ...


STUBS = {"raises": _raises, "ellipsis": _ellipsis, "returns_none": lambda *args: None}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("stub", list(STUBS))
def test_a_stub_is_skipped_and_the_reference_used(name, stub, capsys):
    check = CASES[name][0]
    answer = (STUBS[stub], STUBS[stub]) if name == "heads" else STUBS[stub]
    used = check(answer, strict=True)  # a skipped cell is not an error, even when strict
    assert used == REFERENCES[name]
    out = capsys.readouterr().out
    assert out.startswith("- ") and "skipped" in out and "reference" in out


def test_a_wrong_answer_does_not_raise_by_default(capsys):
    hint, answer = ATTENTION_WRONG[0]
    assert checks.check_attention(answer) is checks.reference_attention
    out = capsys.readouterr().out
    assert out.startswith("✗ attention: " + checks.HINTS[hint]) and "goes on with the reference" in out


def test_an_error_in_the_learner_code_is_reported_not_raised(capsys):
    _, answer = PATCHIFY_WRONG[-1]  # patch size 16 hard-coded: the reshape fails
    assert checks.check_patchify(answer) is checks.reference_patchify
    assert "Your code raised RuntimeError" in capsys.readouterr().out


def test_a_shape_mistake_says_expected_and_got():
    _, answer = PATCHIFY_WRONG[-2]
    with pytest.raises(checks.CheckFailed, match=r"Expected shape \(2, 9, 48\), got \(2, 3, 3, 48\)"):
        checks.check_patchify(answer, strict=True)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(1234)  # a state no check could leave behind by seeding the global generator itself
    state = torch.get_rng_state()
    for check, right, _ in CASES.values():
        check(right[0])
    assert torch.equal(torch.get_rng_state(), state)


def test_every_known_mistake_is_far_from_the_tolerance(monkeypatch):
    """The checks compare to 1e-4 relative, 1e-5 absolute; each known mistake must be far outside that."""
    gaps = {}
    diagnose = checks._diagnose

    def measure(probe, fn, want, mistakes=(), *args, **kwargs):
        for hint, wrong in mistakes:
            seen = probe(wrong)
            gap = math.inf if len(seen) != len(want) else 0.0
            for a, b in zip(seen, want, strict=False):
                if b is not None:
                    same_shape = a.shape == b.shape
                    diff = (a.double() - b.double()).abs().nan_to_num(nan=math.inf) if same_shape else None
                    gap = max(gap, diff.max().item() if same_shape else math.inf)
            gaps[hint] = min(gaps.get(hint, math.inf), gap)
        return diagnose(probe, fn, want, mistakes, *args, **kwargs)

    monkeypatch.setattr(checks, "_diagnose", measure)
    monkeypatch.setattr(detector_checks, "_diagnose", measure)
    for check, right, _ in CASES.values():
        check(right[0])
    catalogues = ("PATCHIFY", "CLASS_TOKEN", "ATTENTION", "SPLIT", "MERGE", "BLOCK", "TRAINING", "ROLLOUT")
    assert set(gaps) == {hint for c in catalogues for hint, _ in getattr(mistakes, f"{c}_MISTAKES")}
    assert min(gaps.values()) > 0.03, gaps


# --- the references agree with helpers.model.vit and PyTorch ------------------------------------------


def test_reference_patchify_is_what_the_patch_convolution_sees():
    embed = PatchEmbedding(image_size=16, patch_size=4, in_channels=3, dim=10)
    images = torch.randn(3, 3, 16, 16)
    patches = checks.reference_patchify(images, 4)  # (B, N, C*P*P)
    tokens = patches @ embed.proj.weight.flatten(1).T + embed.proj.bias  # flattened patch @ E + b
    torch.testing.assert_close(tokens, embed.proj(images).flatten(2).transpose(1, 2))


def test_reference_class_token_is_patch_embedding():
    embed = PatchEmbedding(image_size=16, patch_size=4, in_channels=3, dim=10)
    nn.init.normal_(embed.class_token)  # not zero, so that it matters
    images = torch.randn(3, 3, 16, 16)
    tokens = embed.proj(images).flatten(2).transpose(1, 2)
    out = checks.reference_add_class_token(tokens, embed.class_token, embed.pos_embedding)
    torch.testing.assert_close(out, embed(images))


def test_reference_attention_heads_and_block_are_helpers_vit():
    attn = MultiHeadSelfAttention(dim=12, heads=3).eval()
    x = torch.randn(2, 7, 12)
    q, k, v = (checks.reference_split_heads(t, 3) for t in attn.to_qkv(x).chunk(3, dim=-1))
    out, weights = checks.reference_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(weights, attn.attention_weights(x))
    torch.testing.assert_close(attn.proj(checks.reference_merge_heads(out)), attn(x))

    block = TransformerEncoderBlock(dim=12, heads=3, mlp_dim=24).eval()
    torch.testing.assert_close(checks.reference_block_forward(block, x), block(x))


def test_reference_training_step_is_one_clipped_sgd_update():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    images, labels = torch.randn(8, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.CrossEntropyLoss()(model(images), labels)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    norm = torch.cat([g.flatten() for g in grads]).norm()
    assert norm > 0.1  # so that clipping to 0.1 changes the update
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    returned = checks.reference_training_step(model, images, labels, nn.CrossEntropyLoss(), optimizer, 0.1)
    assert returned == pytest.approx(loss.item())
    for p, p0, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - 0.5 * g * (0.1 / norm), rtol=1e-5, atol=1e-6)


# --- the lessons: every your-turn cell is a stub followed by its check ------------------------------

ROOT = Path(__file__).resolve().parents[1]

LESSONS = sorted((ROOT / "notebooks").glob("0[1-6]_*.ipynb"))  # every lesson with a your-turn cell
MIN_YOUR_TURN = 9  # issue 21: at least 9 across the lessons, at least one in each
CHECKS = {name for module in (checks, detector_checks) for name in dir(module) if name.startswith("check_")}


def _your_turn_pairs(path: Path) -> list[tuple[str, str]]:
    """(your-turn cell, the cell after it) sources, for every your-turn cell of a notebook."""
    cells = nbformat.read(path, as_version=4).cells
    pairs = []
    for i, cell in enumerate(cells):
        if "your-turn" in cell.metadata.get("tags", []):
            assert cell.cell_type == "code", f"{path.name}: a your-turn cell must be code"
            assert i + 1 < len(cells), (
                f"{path.name}: the last cell is a your-turn cell, with no check after it"
            )
            pairs.append((cell.source, cells[i + 1].source if cells[i + 1].cell_type == "code" else ""))
    return pairs


def _check_call(source: str) -> tuple[list[str], str, list[str]]:
    """In ``a, b = checks.check_x(a, b)``: the names assigned, the check called and its arguments."""
    for node in ast.parse(source).body:
        call = node.value if isinstance(node, ast.Assign) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in CHECKS:
            target = node.targets[0]
            assigned = [t.id for t in target.elts] if isinstance(target, ast.Tuple) else [target.id]
            return assigned, call.func.attr, [a.id for a in call.args if isinstance(a, ast.Name)]
    return [], "", []


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_your_turn_cell_is_a_stub_followed_by_its_check(path):
    for stub, after in _your_turn_pairs(path):
        functions = [n for n in ast.parse(stub).body if isinstance(n, ast.FunctionDef)]
        assert functions, f"{path.name}: a your-turn cell defines the function(s) the learner writes:\n{stub}"
        for function in functions:  # as shipped, each one raises NotImplementedError: the check skips it
            last = function.body[-1]
            assert isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last), function.name
        assigned, check, arguments = _check_call(after)
        names = [f.name for f in functions]
        assert check, f"{path.name}: the cell after the your-turn cell for {names} must call checks.check_*"
        assert arguments == names == assigned, (
            f"{path.name}: `{', '.join(names)} = checks.{check}({', '.join(names)})` keeps what the check "
            f"returns; found {assigned} = {check}({arguments})"
        )


def test_the_lessons_hold_the_your_turn_cells_and_use_every_check():
    pairs = [pair for path in LESSONS for pair in _your_turn_pairs(path)]
    assert len(pairs) >= MIN_YOUR_TURN, f"{len(pairs)} your-turn cells in the lessons"
    used = {_check_call(after)[1] for _, after in pairs}
    assert used >= CHECKS, f"checks no lesson uses: {CHECKS - used}"


# --- lesson 06: a threshold for a target false-positive rate ------------------------------------------


def _real_ranked(scores, is_fake):
    return scores[~is_fake].sort(descending=True).values


THRESHOLD_RIGHT = [
    detector_checks.reference_threshold,
    lambda s, f, fpr: _real_ranked(s, f)[int(fpr * (~f).sum() + 1e-9)].item(),
    lambda s, f, fpr: torch.quantile(s[~f], 1 - fpr).item(),  # between two scores: flags the same images
]
_FIXED_TEST = (torch.rand(50, generator=torch.Generator().manual_seed(1)), torch.arange(50) < 25)
THRESHOLD_WRONG = [
    ("fpr_counts_fakes", lambda s, f, fpr: s.sort(descending=True).values[int(fpr * len(s))].item()),
    ("flags_at_or_above", lambda s, f, fpr: _real_ranked(s, f)[int(fpr * (~f).sum()) - 1].item()),
    ("threshold_on_fakes", lambda s, f, fpr: s[f].sort(descending=True).values[int(fpr * f.sum())].item()),
    # ignores s and f: the threshold chosen on a fixed test set
    ("chose_on_test", lambda s, f, fpr: detector_checks.reference_threshold(*_FIXED_TEST, fpr)),
    ("chose_on_test", lambda s, f, fpr: 0.5),
    ("values", lambda s, f, fpr: _real_ranked(s, f)[0].item()),  # flags nothing
    ("error", lambda s, f, fpr: s[~f][len(s)].item()),  # IndexError
]


@pytest.mark.parametrize("answer", THRESHOLD_RIGHT)
def test_check_threshold_accepts_right_answers(answer, capsys):
    assert detector_checks.check_threshold(answer, strict=True) is answer
    assert capsys.readouterr().out.startswith("✓ threshold")


@pytest.mark.parametrize(("hint", "answer"), THRESHOLD_WRONG, ids=[h for h, _ in THRESHOLD_WRONG])
def test_check_threshold_names_the_mistake(hint, answer):
    with pytest.raises(checks.CheckFailed) as failure:
        detector_checks.check_threshold(answer, strict=True)
    assert failure.value.hint == hint, failure.value.message
    if hint in mistakes.THRESHOLD_HINTS:
        assert mistakes.THRESHOLD_HINTS[hint] in failure.value.message


def test_check_threshold_tests_every_hint_and_skips_a_stub(capsys):
    assert set(mistakes.THRESHOLD_HINTS) <= {hint for hint, _ in THRESHOLD_WRONG}
    for stub in STUBS.values():
        assert detector_checks.check_threshold(stub, strict=True) is detector_checks.reference_threshold
    assert "skipped" in capsys.readouterr().out


def test_lesson_06_holds_the_threshold_your_turn_and_its_check():
    pairs = _your_turn_pairs(ROOT / "notebooks" / "06_deployment.ipynb")
    assert [_check_call(after) for _, after in pairs] == [
        (["pick_threshold"], "check_threshold", ["pick_threshold"])
    ]
    assert "raise NotImplementedError" in pairs[0][0]
