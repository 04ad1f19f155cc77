"""Two trainings on one machine at once: how much each slows down, with and without ``course.share_cpus``.

    python benchmarks/two_kernels.py [--steps 40] [--batch-size 64] [--image-size 64] [--delay 3]

A lesson that trains (03, 04) on a 2-core machine while another process trains beside it (a second
notebook, a neighbour's job) used to run 7-14 times slower. Each "kernel" here is a process that trains
lesson 03's small-mode tiny ViT (64 px, patch 8) on random images for ``--steps`` steps and reports
its seconds. Four runs:

- ``alone, torch's default threads`` and ``alone, share_cpus`` (what a lesson does now);
- ``two at once`` the same two ways: the second process starts ``--delay`` seconds after the first,
  as a second notebook would, and each reports its own time.

Other load on the machine (a shared CI or dev machine) shows up in every number: the script prints
the CPUs other processes kept busy just before it started.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(share: bool, steps: int, batch_size: int, image_size: int) -> None:
    import torch

    from helpers import course
    from helpers.model.vit import ViT, get_config

    if share:
        course.share_cpus()
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = ViT(get_config("vit_tiny", image_size=image_size, patch_size=8, num_classes=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 2, (batch_size,))
    start = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"{time.perf_counter() - start:.1f} {threads}", flush=True)


def run(share: bool, count: int, args: argparse.Namespace) -> list[tuple[float, int]]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
    ] + (["--share"] if share else [])
    procs = []
    for i in range(count):
        if i:
            time.sleep(args.delay)
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        seconds, threads = proc.communicate()[0].split()
        results.append((float(seconds), int(threads)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--delay", type=float, default=3.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--share", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.share, args.steps, args.batch_size, args.image_size)
        return 0
    from helpers import course

    print(
        f"before starting: other processes keep {course.busy_cpus(1.0):.1f} of "
        f"{course.free_cpus()[0]} CPUs busy"
    )
    for share in (False, True):
        label = "share_cpus" if share else "torch's default threads"
        ((alone, threads),) = run(share, 1, args)
        print(f"alone, {label}: {alone:.1f} s ({threads} threads)", flush=True)
        pair = run(share, 2, args)
        (first, t1), (second, t2) = pair
        print(
            f"two at once, {label}: first {first:.1f} s ({t1} threads, {first / alone:.1f}x), "
            f"second {second:.1f} s ({t2} threads, {second / alone:.1f}x)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
