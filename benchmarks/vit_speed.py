"""Speed of our ViT-B/16 against torchvision's ``vit_b_16``, same weights, on the CPU.

    python benchmarks/vit_speed.py --batch-size 8 --repeats 5

Measures fp32 inference (``torch.inference_mode``) and one training step (forward, cross-entropy,
backward, AdamW step) at 224 px, then our bf16-autocast inference and how far its logits are from fp32.
The last line puts our fp32 inference against the fp32 matrix-multiplication peak of this machine,
timed in turn with it (square matmuls of ``--matmul-size``): GFLOP/s of the model (its FLOPs counted
by ``torch.utils.flop_counter``) as a percentage of GFLOP/s of a plain ``torch.mm``.
The two models run interleaved (ours, torchvision, ours, ...) in one process, so a busy machine slows
both alike; the medians and their ratio are what to compare. The ratio is also given in process CPU
time, which counts only the time the process really computed: on a shared machine it moves less than
wall-clock time (most stable with --threads 1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import vit_b_16

from helpers.model.vit import ViT


def time_call(fn) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) taken by ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def make_train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def compare(name: str, ours_fn, theirs_fn, batch_size: int, repeats: int) -> None:
    ours_fn(), theirs_fn()  # warm-up (allocations, kernel selection)
    ours_t, theirs_t = [], []
    for _ in range(repeats):
        ours_t.append(time_call(ours_fn))
        theirs_t.append(time_call(theirs_fn))
    ours_wall, ours_cpu = (statistics.median(t) for t in zip(*ours_t, strict=True))
    theirs_wall, theirs_cpu = (statistics.median(t) for t in zip(*theirs_t, strict=True))
    print(
        f"{name:<22} ours {batch_size / ours_wall:7.2f} img/s   "
        f"torchvision {batch_size / theirs_wall:7.2f} img/s   "
        f"speed-up {theirs_wall / ours_wall:.2f}x (CPU time: {theirs_cpu / ours_cpu:.2f}x)"
    )


@torch.inference_mode()
def share_of_matmul_peak(
    model: nn.Module, images: torch.Tensor, size: int, repeats: int
) -> tuple[float, float]:
    """``(GFLOP/s of model(images), GFLOP/s of torch.mm on two fp32 size x size matrices)``, timed in
    turn (model, matmul, model, ...), medians of ``repeats``. The matmul is about the most this
    machine computes in fp32; the model's FLOPs are counted by ``torch.utils.flop_counter``."""
    with FlopCounterMode(display=False) as counter:
        model(images)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    model_t, matmul_t = [], []
    for _ in range(repeats):
        model_t.append(time_call(lambda: model(images))[0])
        matmul_t.append(time_call(lambda: torch.mm(a, b))[0])
    model_gflops = counter.get_total_flops() / statistics.median(model_t) / 1e9
    return model_gflops, 2 * size**3 / statistics.median(matmul_t) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the matrices of the peak")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    theirs = vit_b_16(image_size=args.image_size)
    with torch.no_grad():  # make the zero-initialised head non-zero so the logits mean something
        theirs.heads.head.weight.normal_(std=0.02)
    ours = ViT.from_torchvision(theirs)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, 1000, (args.batch_size,))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"{args.image_size} px, median of {args.repeats}"
    )

    ours.eval(), theirs.eval()
    with torch.inference_mode():
        compare("inference fp32", lambda: ours(images), lambda: theirs(images), args.batch_size, args.repeats)

    ours.train(), theirs.train()
    compare(
        "train step fp32",
        make_train_step(ours, images, labels),
        make_train_step(theirs, images, labels),
        args.batch_size,
        args.repeats,
    )

    # The training steps changed the weights differently; copy ours again for the bf16 check.
    ours = ViT.from_torchvision(theirs).eval()
    with torch.inference_mode():
        fp32_logits = ours(images)

        def bf16() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return ours(images)

        bf16()
        bf16_t, fp32_t = [], []
        for _ in range(args.repeats):  # interleaved, like compare()
            bf16_t.append(time_call(bf16)[0])
            fp32_t.append(time_call(lambda: ours(images))[0])
        deviation = (bf16().float() - fp32_logits).abs().max().item()
    print(
        f"{'inference bf16 (ours)':<22} bf16 {args.batch_size / statistics.median(bf16_t):7.2f} img/s   "
        f"fp32 {args.batch_size / statistics.median(fp32_t):7.2f} img/s   "
        f"max |logit bf16 - fp32| {deviation:.4f} (largest |fp32 logit| {fp32_logits.abs().max().item():.2f})"
    )

    # our fp32 inference against the fp32 matmul peak, measured side by side
    model_gflops, peak = share_of_matmul_peak(ours, images, args.matmul_size, args.repeats)
    print(
        f"our fp32 inference: {model_gflops:.0f} GFLOP/s, {100 * model_gflops / peak:.0f}% of the fp32 "
        f"matmul peak measured in this run ({peak:.0f} GFLOP/s, torch.mm of {args.matmul_size}^2 matrices)"
    )


if __name__ == "__main__":
    main()
