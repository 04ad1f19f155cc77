"""Lessons 04-06: the your-turn checks of the detector lessons: freezing and parameter groups (04),
attention rollout (05), a threshold for a target false-positive rate (06). Same contract as
``helpers.lessons.checks``, whose machinery they share."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from helpers.lessons import mistakes as m
from helpers.lessons.checks import (
    Verdict,
    _call,
    _diagnose,
    _guard,
    _randn,
    _report,
    _Skipped,
    _tiny_vit,
    _wrong,
)
from helpers.lessons.mistakes import HINTS
from helpers.train import trust

# --- lesson 04: freeze the backbone and build the parameter groups ----------------------------------


def reference_freeze_and_group(model: nn.Module, lr: float, backbone_lr_scale: float, train_backbone: bool):
    """Freeze all but ``model.head`` unless ``train_backbone``; return the optimiser's groups: the head at
    ``lr``, the trainable rest at ``lr * backbone_lr_scale``, each trainable parameter once."""
    model.requires_grad_(train_backbone)  # the linear probe: every parameter frozen ...
    model.head.requires_grad_(True)  # ... but the new head's
    head = [p for name, p in model.named_parameters() if name.startswith("head.")]
    backbone = [p for name, p in model.named_parameters() if not name.startswith("head.") and p.requires_grad]
    groups = [{"params": backbone, "lr": lr * backbone_lr_scale}] if backbone else []
    return groups + [{"params": head, "lr": lr}]


LR, SCALE = 1e-3, 0.1  # the check's rates: head 1e-3, backbone 1e-4


def _freeze_verdict(fn: Callable, train_backbone: bool) -> Verdict:
    """Call ``fn`` on a fresh tiny ViT (all parameters trainable, as after ``reset_head``) and read what it
    froze and grouped; a stub raises _Skipped."""
    model = _tiny_vit()
    try:
        groups = fn(model, LR, SCALE, train_backbone)
    except NotImplementedError:
        raise _Skipped from None
    if groups is None or groups is Ellipsis:
        raise _Skipped
    names = {id(p): name for name, p in model.named_parameters()}
    if not isinstance(groups, list | tuple) or not all(isinstance(g, dict) and "params" in g for g in groups):
        return _wrong("not_groups")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    head = {name for name in names.values() if name.startswith("head.")}
    if not head <= trainable:
        return _wrong("head_frozen")
    if not train_backbone and trainable != head:
        return _wrong("backbone_not_frozen")
    if train_backbone and trainable != set(names.values()):
        return _wrong("backbone_frozen_in_finetune")
    rate = {}  # parameter name -> the lr of its group
    for group in groups:
        for p in list(group["params"]):
            name = names.get(id(p), "?")
            if name in rate:
                return _wrong("in_two_groups")
            rate[name] = group.get("lr")
    missing = trainable - set(rate)
    if {"patch_embedding.class_token", "patch_embedding.pos_embedding"} & missing:
        return _wrong("embeddings_missing")
    if missing:
        shown = ", ".join(sorted(missing)[:3])
        return _wrong("param_missing", f"{HINTS['param_missing']} Missing: {shown}.")
    if set(rate) - trainable:
        return _wrong("frozen_in_group")
    if None in rate.values():
        return _wrong("group_without_lr")
    head_lr = {rate[name] for name in head}
    backbone_lr = {rate[name] for name in trainable - head}
    close = lambda rates, want: all(math.isclose(r, want) for r in rates)  # noqa: E731
    if close(head_lr, LR) and close(backbone_lr, LR * SCALE):
        return Verdict("ok")
    if close(head_lr, LR * SCALE) and close(backbone_lr, LR * SCALE):
        return _wrong("head_in_backbone_group")
    if close(head_lr, LR) and close(backbone_lr, LR):
        return _wrong("one_learning_rate")
    if close(head_lr, LR * SCALE) and close(backbone_lr, LR):
        return _wrong("rates_swapped")
    seen = f"head {sorted(head_lr)}, backbone {sorted(backbone_lr)}"
    return _wrong("values", f"With lr={LR} and backbone_lr_scale={SCALE} the rates are {seen}; expected "
                  f"head {LR}, backbone {LR * SCALE:g}.")  # fmt: skip


def check_freeze_and_group(freeze_and_group: Callable, *, strict: bool = False) -> Callable:
    """Lesson 04: ``freeze_and_group(model, lr, backbone_lr_scale, train_backbone)`` freezes all but the
    head for a linear probe and returns the optimiser's parameter groups; checked in both settings."""
    verdict = _guard(lambda: _freeze_verdict(freeze_and_group, train_backbone=True))  # full fine-tuning
    if verdict.status == "ok":
        verdict = _guard(lambda: _freeze_verdict(freeze_and_group, train_backbone=False))  # the linear probe
    ok = "the probe trains the head only; fine-tuning has every parameter in one group, at the right rate."
    return _report("freeze and group", verdict, freeze_and_group, reference_freeze_and_group, ok, strict)


# --- Lesson 05: attention rollout -----------------------------------------------------------------------


def reference_attention_rollout(maps: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Abnar & Zuidema (2020): one (B, heads, T, T) map per block -> R (B, T, T), R = Â_L ... Â_1 with
    Â_l = rows normalised(residual * I + (1 - residual) * mean over heads of A_l)."""
    tokens = maps[0].shape[-1]
    eye = torch.eye(tokens, device=maps[0].device)  # (T, T): the residual path, each token to itself
    rollout = eye.expand(maps[0].shape[0], tokens, tokens)  # (B, T, T): before block 1, every token is itself
    for attn in maps:
        a = residual * eye + (1 - residual) * attn.mean(dim=1)  # (B, T, T): heads averaged, identity mixed in
        a = a / a.sum(dim=-1, keepdim=True)  # rows sum to 1
        rollout = a @ rollout  # (B, T, T): this block after all the earlier ones
    return rollout


def check_attention_rollout(attention_rollout: Callable, *, strict: bool = False) -> Callable:
    """Lesson 05: ``attention_rollout(maps)``: a list of (B, heads, T, T) attention maps, one per block,
    -> (B, T, T) rollout with the identity mixed in at 0.5 (Abnar & Zuidema 2020)."""
    maps = [_randn(2, 3, 5, 5, seed=20 + i).mul(2).softmax(dim=-1) for i in range(3)]  # 3 blocks, 3 heads
    advice = "Per block: average the heads, 0.5 * I + 0.5 * A, rows to sum 1, then R = A_l @ R."
    want = (reference_attention_rollout(maps),)
    verdict = _diagnose(lambda f: _call(f, maps), attention_rollout, want, m.ROLLOUT_MISTAKES, advice=advice)
    ok = "same rollout as the reference for three blocks of three heads."
    return _report("attention rollout", verdict, attention_rollout, reference_attention_rollout, ok, strict)


# --- lesson 06: a threshold for a target false-positive rate ---------------------------------------------


def reference_threshold(val_scores: torch.Tensor, val_is_fake: torch.Tensor, target_fpr: float) -> float:
    """The lowest t such that flagging P(fake) > t flags at most ``target_fpr`` of the real photos."""
    return trust.threshold_for_fpr(val_scores, (~val_is_fake).long(), target_fpr)  # label 1 = real


def check_threshold(pick_threshold: Callable, *, strict: bool = False) -> Callable:
    """Lesson 06: ``pick_threshold(val_scores, val_is_fake, target_fpr)``: the lowest threshold of P(fake)
    that flags (strictly above) at most ``target_fpr`` of the validation set's real photos."""
    sets = []  # two made-up validation sets (P(fake), is_fake) of 40 fakes and 40 real photos, a target rate
    for seed in (6, 7):  # one target: a function blind to the scores answers the same
        g = torch.Generator().manual_seed(seed)
        scores = torch.cat([0.6 + 0.4 * torch.rand(40, generator=g), 0.7 * torch.rand(40, generator=g)])
        sets.append((scores, torch.arange(80) < 40, 0.1))  # overlapping classes, distinct scores
    answers = _guard(lambda: [float(*_call(pick_threshold, *validation)) for validation in sets])
    verdict, answers = (answers, []) if isinstance(answers, Verdict) else (Verdict("ok"), answers)
    for answer, (scores, is_fake, fpr) in zip(answers, sets, strict=False):
        flags = lambda t: scores > t  # noqa: E731, B023  (what a threshold does: strictly above)
        if torch.equal(flags(answer), flags(reference_threshold(scores, is_fake, fpr))):
            continue
        wrong = [
            h for h, f in m.THRESHOLD_MISTAKES if torch.equal(flags(answer), flags(f(scores, is_fake, fpr)))
        ]
        hint = "chose_on_test" if answers[0] == answers[1] else next(iter(wrong), None)
        text = (
            f"At {answer:.3f} it flags {int(flags(answer)[~is_fake].sum())} of 40 real photos; 4 are allowed."
        )
        verdict = _wrong(hint or "values", m.THRESHOLD_HINTS[hint] if hint else text)
        break
    ok = "it flags the same validation images as the reference, on two made-up validation sets."
    return _report("threshold", verdict, pick_threshold, reference_threshold, ok, strict)
