"""Lessons 01-03: checks for the your-turn cells: run the learner's function on seeded inputs, answer ✓ or
name the mistake (the known-wrong version in ``helpers.lessons.mistakes`` computing the same); return it if
right, else the reference. ``strict=True`` raises ``CheckFailed`` instead of printing. The machinery here
serves the detector lessons' checks too (``helpers.lessons.detector_checks``)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.lessons import mistakes as m
from helpers.lessons.mistakes import HINTS
from helpers.model.vit import MultiHeadSelfAttention, PatchEmbedding, TransformerEncoderBlock, ViT, ViTConfig

# A right answer computed in another order differs by float32 rounding (~1e-7); every mistake by 0.03
# or more (most by over 0.5), as tests/test_checks.py measures on these inputs.
RTOL, ATOL = 1e-4, 1e-5


class CheckFailed(AssertionError):
    """A wrong answer to a check called with ``strict=True``; ``hint`` names the mistake."""

    def __init__(self, hint: str, message: str):
        super().__init__(f"[{hint}] {message}")
        self.hint = hint
        self.message = message


@dataclass(frozen=True)
class Verdict:
    status: str  # "ok", "skipped" or "wrong"
    hint: str = ""  # a key of HINTS, or "shape", "values", "count", "not_tensor", "error"
    message: str = ""


def _wrong(hint: str, message: str | None = None) -> Verdict:
    return Verdict("wrong", hint, HINTS[hint] if message is None else message)


class _Skipped(Exception): ...  # the learner's function is still the stub


def reference_patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*P*P): patches row by row, each flattened as (channel, row, column)."""
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P): grid position first
    return x.reshape(B, (H // P) * (W // P), C * P * P)  # (B, N, C*P*P)


def reference_add_class_token(tokens: torch.Tensor, class_token: torch.Tensor, pos_embedding: torch.Tensor):
    """(B, N, D) patch tokens -> (B, N+1, D): the [class] token in front, then N+1 positions added."""
    cls = class_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D), a view of the one (1, 1, D) token
    return torch.cat([cls, tokens], dim=1) + pos_embedding  # (B, N+1, D)


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One head, or many at once: q, k, v (..., T, d) -> output (..., T, d), weights (..., T, T)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, T): query i against key j
    weights = scores.softmax(dim=-1)  # each row sums to 1 over the keys
    return weights @ v, weights


def reference_split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, h, T, d): head j takes the features j*d to (j+1)*d - 1 of every token."""
    B, T, D = x.shape
    return x.reshape(B, T, heads, D // heads).transpose(1, 2)  # (B, T, h, d) -> (B, h, T, d)


def reference_merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, h, T, d) -> (B, T, h*d): the heads side by side again, the inverse of split_heads."""
    B, h, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d)  # reshape copies: a transposed tensor is not contiguous


def reference_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2-3, pre-norm: x + MSA(LN1(x)), then x + MLP(LN2(x)). ``block`` has norm1, attn, norm2, mlp."""
    x = block.attn(block.norm1(x)) + x  # (B, T, D)
    return block.mlp(block.norm2(x)) + x  # (B, T, D)


def reference_training_step(model, images, labels, loss_fn, optimizer, max_norm: float) -> float:
    """One update: zero the gradients, forward, loss, backward, clip the gradient norm, step."""
    optimizer.zero_grad()  # else this step's gradients are added to the last step's
    loss = loss_fn(model(images), labels)  # one number: the mean loss over the batch
    loss.backward()  # d(loss)/d(parameter) into every parameter's .grad
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # before the step, which reads .grad
    optimizer.step()
    return loss.item()


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """Fixed random inputs; the notebook's random state is left alone."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """A module with fixed weights plus noise, so that parts initialised to 0 or 1 (class token,
    LayerNorms, biases, head) matter too. The notebook's random state is left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.2)
    return module.eval()


def _tiny_vit() -> ViT:
    """A one-block ViT of 8 x 8 images with fixed weights, for the checks that train or freeze one."""
    config = ViTConfig(image_size=8, patch_size=4, num_classes=2, dim=12, depth=1, heads=3, mlp_dim=24)
    return _seeded(lambda: ViT(config))


def _call(fn: Callable, *args) -> tuple:
    """The learner's function's result as a tuple; a stub raises _Skipped."""
    try:
        out = fn(*args)
    except NotImplementedError:
        raise _Skipped from None
    if out is None or out is Ellipsis:
        raise _Skipped
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def _guard(run: Callable, errors=()):
    """``run()``'s result; a stub is the verdict "skipped", an error the learner's code raised is named (as
    the mistake whose ``errors`` pattern matches, if one does)."""
    try:
        return run()
    except _Skipped:
        return Verdict("skipped")
    except Exception as err:
        hint = next((h for h, pattern in errors if re.search(pattern, str(err))), None)
        return _wrong(hint) if hint else _wrong("error", f"Your code raised {type(err).__name__}: {err}")


def _same(seen: Sequence, want: Sequence) -> bool:
    """Same outputs, shapes and values to rounding; ``None`` in ``want`` is not compared."""
    close = lambda a, b: torch.allclose(a.detach().cpu().double(), b.double(), RTOL, ATOL, equal_nan=True)  # noqa: E731
    pairs = zip(seen, want, strict=False)
    return len(seen) == len(want) and all(b is None or (a.shape == b.shape and close(a, b)) for a, b in pairs)


def _diagnose(probe, fn, want, mistakes=(), errors=(), advice="", loose=None) -> Verdict:
    """Compare ``probe(fn)`` with ``want``; when wrong, find the mistake (hint, function) that computes
    the same, or the error (hint, regex) that matches. ``loose`` picks the parts a second search compares."""
    seen = _guard(lambda: probe(fn), errors)
    if isinstance(seen, Verdict):
        return seen
    not_tensors = [type(t).__name__ for t in seen if not isinstance(t, torch.Tensor)]
    if not_tensors:
        return _wrong("not_tensor", f"Return torch tensors; got a {not_tensors[0]}.")
    if _same(seen, want):
        return Verdict("ok")
    known = [(hint, probe(wrong_fn)) for hint, wrong_fn in mistakes]
    for keep in (lambda obs: obs, loose) if loose else (lambda obs: obs,):
        hint = next((h for h, obs in known if _same(keep(seen), keep(obs))), None)
        if hint:
            return _wrong(hint)
    if len(seen) != len(want):
        return _wrong(
            "count", f"Your function returned {len(seen)} value(s); {len(want)} were expected. {advice}"
        )
    pairs = [(a, b) for a, b in zip(seen, want, strict=True) if b is not None]
    for a, b in pairs:
        if a.shape != b.shape:
            return _wrong("shape", f"Expected shape {tuple(b.shape)}, got {tuple(a.shape)}. {advice}")
    gap = max((a.detach().cpu().double() - b.double()).abs().max().item() for a, b in pairs)
    return _wrong("values", f"The shapes are right but the numbers differ (by up to {gap:.3g}). {advice}")


def _report(step: str, verdict: Verdict, learner, reference, ok_text: str, strict: bool):
    """Print the verdict; return what the lesson uses next: the learner's version or the reference."""
    if verdict.status == "ok":
        print(f"✓ {step}: {ok_text} The lesson uses your version from here on.")
        return learner
    if verdict.status == "skipped":
        print(f"- {step}: skipped (your cell raises NotImplementedError or returns nothing).")
        print("  The lesson goes on with the reference; fill the cell in, then run it and this check again.")
        return reference
    print(f"✗ {step}: {verdict.message}")
    print("  The lesson goes on with the reference for now; fix your cell, then run it and this check again.")
    if strict:
        raise CheckFailed(verdict.hint, verdict.message)
    return reference


def check_patchify(patchify: Callable, *, strict: bool = False) -> Callable:
    """Lesson 01: ``patchify(images, patch_size)``: (B, C, H, W) -> (B, N, C*P*P) patches, row by row,
    each flattened (channel, row, column) like the patch Conv2d's weights."""
    images, P = _randn(2, 3, 12, 12, seed=1), 4  # a 3 x 3 grid of 4 x 4 patches, 48 numbers each
    # A Conv2d with an identity weight copies each patch out in the order PatchEmbedding's Conv2d reads it.
    reader = torch.eye(3 * P * P).reshape(3 * P * P, 3, P, P)
    want = F.conv2d(images, reader, stride=P).flatten(2).transpose(1, 2)  # (B, N, C*P*P)
    advice = "Patches go row by row over the image, each flattened as (channel, row, column)."
    verdict = _diagnose(lambda f: _call(f, images, P), patchify, (want,), m.PATCHIFY_MISTAKES, advice=advice)
    ok = "your patches are the ones the patch Conv2d of helpers.model.vit.PatchEmbedding reads, in its order."
    return _report("patchify", verdict, patchify, reference_patchify, ok, strict)


def check_class_token(add_class_token: Callable, *, strict: bool = False) -> Callable:
    """Lesson 01: ``add_class_token(tokens, class_token, pos_embedding)``: the (1, 1, D) [class] token in
    front of the (B, N, D) tokens, plus the (1, N+1, D) positions, for any B; PatchEmbedding's answer."""
    embed = _seeded(lambda: PatchEmbedding(image_size=8, patch_size=4, in_channels=3, dim=12))  # N = 4

    def attempt(batch_size: int) -> Verdict:
        images = _randn(batch_size, 3, 8, 8, seed=batch_size)
        with torch.no_grad():
            tokens = embed.proj(images).flatten(2).transpose(1, 2)  # (B, N, D)
            cls, pos = embed.class_token.clone(), embed.pos_embedding.clone()  # (1, 1, D), (1, N+1, D)
            probe = lambda f: _call(f, tokens.clone(), cls, pos)  # noqa: E731
            return _diagnose(
                probe, add_class_token, (embed(images),), m.CLASS_TOKEN_MISTAKES, m.CLASS_TOKEN_ERRORS
            )

    verdict = attempt(2)
    if verdict.status != "skipped":  # a token sized by the batch works for one batch size only
        works = {b for b in (1, 2, 3, 32) if (verdict if b == 2 else attempt(b)).status == "ok"}
        if works == {1}:
            verdict = _wrong("class_token_not_expanded")
        elif works and works != {1, 2, 3, 32}:
            fails = sorted({1, 2, 3, 32} - works)
            saw = f"Your code works for a batch of {min(works)} images but not of {fails[0]}. "
            verdict = _wrong("batch_sized", saw + HINTS["batch_sized"])
    ok = "same tokens as helpers.model.vit.PatchEmbedding, for batches of 1, 2, 3 and 32 images."
    learner, reference = add_class_token, reference_add_class_token
    return _report("[class] token + positions", verdict, learner, reference, ok, strict)


def check_attention(attention: Callable, *, strict: bool = False) -> Callable:
    """Lesson 02: ``attention(q, k, v)`` -> (output, weights) of scaled dot-product attention, for one
    head (B, T, d) and all at once (B, h, T, d)."""
    q, k, v = _randn(3, 2, 5, 8, seed=2).unbind(0)  # (B, T, d) each: 5 tokens, heads of width 8
    advice = "Return (output, weights): weights = softmax(q @ kᵀ / sqrt(d), dim=-1), output = weights @ v."
    want = reference_attention(q, k, v)
    verdict = _diagnose(lambda f: _call(f, q, k, v), attention, want, m.ATTENTION_MISTAKES, advice=advice)
    if verdict.status == "ok":  # the multi-head step calls it on (B, h, T, d) tensors
        q, k, v = _randn(3, 2, 3, 5, 8, seed=3).unbind(0)
        if _diagnose(lambda f: _call(f, q, k, v), attention, reference_attention(q, k, v)).status != "ok":
            verdict = _wrong("not_batched")
    ok = "same output and weights as the reference, for one head and for several at once."
    return _report("attention", verdict, attention, reference_attention, ok, strict)


def _attention_with(split: Callable, merge: Callable, attn: MultiHeadSelfAttention, x: torch.Tensor) -> tuple:
    """helpers.model.vit's multi-head attention, computed with the learner's split and merge."""
    q, k, v = attn.to_qkv(x).chunk(3, dim=-1)  # 3 x (B, T, D): to_qkv's rows are [W_q; W_k; W_v]
    q, k, v = (_call(split, t, attn.heads)[0] for t in (q, k, v))  # 3 x (B, h, T, d)
    out = reference_attention(q, k, v)[0]  # (B, h, T, d)
    return (attn.proj(_call(merge, out)[0]),)  # (B, T, D)


def check_heads(
    split_heads: Callable, merge_heads: Callable, *, strict: bool = False
) -> tuple[Callable, Callable]:
    """Lesson 02: ``split_heads(x, heads)``: (B, T, D) -> (B, h, T, d), ``merge_heads(x)``: back. Checked
    alone, then inside helpers.model.vit's MultiHeadSelfAttention."""
    x, h = _randn(2, 5, 12, seed=4), 3  # (B, T, D) with 3 heads of width 4
    split = reference_split_heads(x, h)  # (B, h, T, d)
    verdict = _diagnose(lambda f: _call(f, x, h), split_heads, (split,), m.SPLIT_MISTAKES)
    if verdict.status == "ok":  # merge gets a contiguous tensor, like the output of weights @ v
        probe = lambda f: _call(f, split.contiguous())  # noqa: E731
        verdict = _diagnose(probe, merge_heads, (x,), m.MERGE_MISTAKES, m.MERGE_ERRORS)
    if verdict.status == "ok":
        attn = _seeded(lambda: MultiHeadSelfAttention(dim=12, heads=h))
        with torch.no_grad():
            verdict = _diagnose(lambda f: _attention_with(f, merge_heads, attn, x), split_heads, (attn(x),))
    ok = "the heads split and merge as in helpers.model.vit; its attention gives the same output with yours."
    learner, reference = (split_heads, merge_heads), (reference_split_heads, reference_merge_heads)
    return _report("split and merge heads", verdict, learner, reference, ok, strict)


def check_encoder_block(block_forward: Callable, *, strict: bool = False) -> Callable:
    """Lesson 02: ``block_forward(block, x)``: a pre-norm encoder block with the layers of ``block``, a
    TransformerEncoderBlock whose LayerNorms have random scales and shifts."""
    block = _seeded(lambda: TransformerEncoderBlock(dim=12, heads=3, mlp_dim=24))
    x = _randn(2, 5, 12, seed=5)  # (B, T, D)
    advice = "Eq. 2-3: x = x + attn(norm1(x)), then x = x + mlp(norm2(x))."
    with torch.no_grad():
        probe = lambda f: _call(f, block, x)  # noqa: E731
        verdict = _diagnose(probe, block_forward, (block(x),), m.BLOCK_MISTAKES, advice=advice)
    ok = "same output as helpers.model.vit.TransformerEncoderBlock with the same weights."
    return _report("encoder block", verdict, block_forward, reference_block_forward, ok, strict)


MAX_NORM = 1.0  # as in lesson 03; the gradient norms of the two steps of the check are 2.4 and 3.3


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().flatten() for t in tensors])


def _training_run(step: Callable) -> tuple:
    """Two calls of ``step`` on a tiny ViT with SGD: (parameter change after call 1, after call 2,
    gradients left behind, losses)."""
    model = _tiny_vit().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # plain SGD: every mistake shows in the weights
    start, params, losses = _flat(model.parameters()), [], []
    for i in range(2):
        images, labels = _randn(4, 3, 8, 8, seed=10 + i), torch.tensor([0, 1, 1, 0]).roll(i)
        try:
            loss = step(model, images, labels, nn.CrossEntropyLoss(), optimizer, MAX_NORM)
        except NotImplementedError:
            raise _Skipped from None
        if loss is None or loss is Ellipsis:
            if i == 0 and torch.equal(_flat(model.parameters()), start):
                raise _Skipped  # the stub: nothing returned, nothing trained
            loss = math.nan  # it trained but did not return the loss
        losses.append(torch.as_tensor(loss).detach().item())
        params.append(_flat(model.parameters()) - start)
    grads = _flat(torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters())
    return params[0], params[1], grads, torch.tensor(losses)


def check_training_step(training_step: Callable, *, strict: bool = False) -> Callable:
    """Lesson 03: ``training_step(model, images, labels, loss_fn, optimizer, max_norm)``: zero_grad, loss,
    backward, clip to ``max_norm``, step, return the loss; two calls compared with the reference's."""
    p1, p2, _, losses = _training_run(reference_training_step)
    want = (p1, p2, None, losses)  # the gradients left behind may differ (zero_grad at the end is fine)
    advice = "The order: zero_grad, loss_fn(model(images), labels), backward, clip, step, return the loss."
    loose = lambda obs: (obs[0], obs[1], obs[3])  # noqa: E731  (a second search ignores the gradients)
    verdict = _diagnose(
        _training_run, training_step, want, m.TRAINING_MISTAKES, m.TRAINING_ERRORS, advice, loose
    )
    ok = "same weights and losses as the reference after two steps."
    return _report("training step", verdict, training_step, reference_training_step, ok, strict)
