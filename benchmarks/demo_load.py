"""Load on the running demo: many clients at once, a third of them sending bad or heavy uploads.

    python benchmarks/demo_load.py [--requests 200] [--clients 8] [--deep-side 5000] [--detector DIR]

Starts ``python app/app.py`` on a loopback port (as the tests do), then ``--clients`` threads, each
with its own ``gradio_client.Client``, send ``--requests`` uploads through ``/predict`` between them.
Two thirds are ordinary images (a 1024x768 JPEG, a 640x480 PNG, an RGBA PNG, an animated GIF), one
third are hard ones: a text file, a truncated JPEG, a 16-bit greyscale PNG of ``--deep-side``
pixels per side (valid, small on disk, expensive to decode; 5000: 25 M pixels, the most the demo
accepts, see ``helpers.serving.demo.MAX_UPLOAD_PIXELS``; a larger one must be refused from its header) and a
decompression bomb's header (20000x20000 pixels claimed). Every request uploads its own copy under
its own name, as distinct users would. The detector is a vit_tiny (64 px, 6 blocks) with random
weights unless ``--detector`` names a trained one: latency does not depend on the weights' values.

Prints the latency of a request (upload + queue + prediction, as the client sees it), p50 and p95,
per kind, and what went wrong: "crashes" are requests that got no answer or an answer that is not
the expected one (a prediction for an image, the demo's refusal for a bad file), and the server
exiting. Also counts tracebacks in the server's log and files left in its upload folder.

The clients run on the same CPU as the server, so measure when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

from helpers.serving.demo_server import running_demo  # noqa: E402

GOOD = ["photo.jpg", "screenshot.png", "rgba.png", "animated.gif"]
BAD = ["notes.txt", "truncated.jpg", "deep.png", "bomb.png"]  # deep.png is valid, but heavy
REFUSED = {"notes.txt", "truncated.jpg", "bomb.png"}  # must get the demo's refusal, not a prediction


def textured(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 gradients plus noise: compresses like a photo, not like a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = 127 + 100 * np.sin(x / 13 + y / 17 + seed)[..., None] + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def bomb_header(path: Path, side: int) -> None:
    """A PNG that claims side x side 8-bit grey pixels and holds none."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def make_files(folder: Path, deep_side: int) -> dict[str, Path]:
    """One file of every kind the clients send."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in GOOD + BAD}
    Image.fromarray(textured(768, 1024, seed=1)).save(files["photo.jpg"], quality=90)
    Image.fromarray(textured(480, 640, seed=2)).save(files["screenshot.png"])
    rgba = Image.fromarray(textured(256, 256, seed=3)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((256, 256)))
    rgba.save(files["rgba.png"])
    frames = [Image.fromarray(textured(128, 128, seed=s)) for s in (4, 5, 6)]
    frames[0].save(files["animated.gif"], save_all=True, append_images=frames[1:], duration=100)
    files["notes.txt"].write_text("A shopping list, not a picture.\n" * 20)
    files["truncated.jpg"].write_bytes(files["photo.jpg"].read_bytes()[:20_000])
    ramp = np.linspace(0, 65535, deep_side, dtype=np.uint16)
    Image.fromarray(np.broadcast_to(ramp, (deep_side, deep_side)).copy()).save(files["deep.png"])
    bomb_header(files["bomb.png"], 20_000)
    return files


def plan(requests: int, seed: int) -> list[str]:
    """``requests`` kinds in random order: two thirds good ones, one third bad ones, each list cycled."""
    bad = requests // 3
    kinds = [BAD[i % len(BAD)] for i in range(bad)] + [GOOD[i % len(GOOD)] for i in range(requests - bad)]
    random.Random(seed).shuffle(kinds)
    return kinds


def run_clients(
    url: str, jobs: list[tuple[int, str, Path]], clients: int, refused: set[str] = REFUSED
) -> list[tuple[str, float, str]]:
    """Send every job from ``clients`` threads; ``(kind, seconds, outcome)`` per job, outcome "ok" or
    why not. The kinds in ``refused`` must get the demo's refusal, the others a prediction."""
    import gradio_client
    from gradio_client.exceptions import AppError

    from helpers.serving import demo

    results: list[tuple[str, float, str]] = []
    lock = threading.Lock()
    todo = iter(jobs)
    expected_refusals = ("is not an image the demo can use", "decompression-bomb")

    def worker() -> None:
        client = gradio_client.Client(url, verbose=False)
        while True:
            with lock:
                job = next(todo, None)
            if job is None:
                return
            _, kind, path = job
            start = time.perf_counter()
            try:
                answer = client.predict(gradio_client.handle_file(str(path)), api_name="/predict")
                outcome = (
                    "ok" if kind not in refused and set(answer) == {"label", "confidences"} else "answered"
                )
            except AppError as err:
                was_refused = any(
                    text in str(err) for text in expected_refusals
                ) and demo.NOT_AN_UPLOAD not in str(err)
                outcome = "ok" if kind in refused and was_refused else f"error: {str(err)[:120]}"
            except Exception as err:  # no answer at all: the connection or the server failed
                outcome = f"{type(err).__name__}: {str(err)[:120]}"
            with lock:
                results.append((kind, time.perf_counter() - start, outcome))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--deep-side", type=int, default=5000, help="side of the 16-bit PNG (5000: 25 M pixels, the cap)"
    )
    parser.add_argument("--detector", type=Path, default=None, help="default: vit_tiny with random weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fakevit-load-") as tmp:
        work = Path(tmp)
        detector = args.detector or random_vit_tiny(work / "detector")
        files = make_files(work / "kinds", args.deep_side)
        jobs = []
        for index, kind in enumerate(plan(args.requests, args.seed)):
            copy = work / "sent" / f"{index:04d}_{kind}"  # its own name: its own path in Gradio's folder
            copy.parent.mkdir(exist_ok=True)
            shutil.copyfile(files[kind], copy)
            jobs.append((index, kind, copy))
        print(
            f"{args.requests} requests ({sum(k in BAD for _, k, _ in jobs)} bad or heavy), "
            f"{args.clients} clients, "
            f"16-bit PNG {args.deep_side}^2 ({files['deep.png'].stat().st_size / 1e3:.0f} kB), "
            f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        server_dir = work / "server"
        with running_demo(detector, server_dir, extra_args=["--no-examples"]) as url:
            start = time.perf_counter()
            from helpers.serving.demo import MAX_UPLOAD_PIXELS

            too_many_pixels = {"deep.png"} if args.deep_side**2 > MAX_UPLOAD_PIXELS else set()
            results = run_clients(url, jobs, args.clients, REFUSED | too_many_pixels)
            elapsed = time.perf_counter() - start
            still_up = run_clients(url, [(0, "photo.jpg", files["photo.jpg"])], 1)[0][2] == "ok"
        log = (server_dir / "server.log").read_text(errors="replace")
        left = [p for p in (server_dir / "gradio").rglob("*") if p.is_file()]

    seconds = [s for _, s, _ in results]
    failures = [(kind, outcome) for kind, _, outcome in results if outcome != "ok"]
    print(f"done in {elapsed:.1f} s ({len(results) / elapsed:.1f} requests/s)")
    print(
        f"latency p50 {percentile(seconds, 50):.2f} s, p95 {percentile(seconds, 95):.2f} s, "
        f"max {max(seconds):.2f} s"
    )
    by_kind = defaultdict(list)
    for kind, s, _ in results:
        by_kind[kind].append(s)
    for kind in GOOD + BAD:
        if by_kind[kind]:
            print(
                f"  {kind:15s} n={len(by_kind[kind]):3d}  median {statistics.median(by_kind[kind]):.2f} s  "
                f"max {max(by_kind[kind]):.2f} s"
            )
    print(
        f"crashes: {len(failures) + (not still_up)} (requests without the expected answer: {len(failures)}; "
        f"server {'still serving' if still_up else 'DOWN'})"
    )
    for kind, outcome in failures[:10]:
        print(f"  {kind}: {outcome}")
    print(
        f"server log: {log.count('Traceback')} tracebacks, "
        f"{log.count('refused upload')} 'refused upload' lines; "
        f"files left in the upload folder: {len(left)}"
    )


def random_vit_tiny(out_dir: Path) -> Path:
    """The vit_tiny preset (64 px, 6 blocks, what `make run` trains) with random weights and head."""
    import torch

    from helpers.data.datasets import CLASS_NAMES
    from helpers.data.transforms import eval_transform_spec
    from helpers.model.vit import ViT, get_config
    from helpers.serving.inference import save_detector

    torch.manual_seed(0)
    model = ViT(get_config("vit_tiny"))
    torch.nn.init.normal_(model.head.weight, std=0.1)
    return save_detector(model, out_dir, CLASS_NAMES, eval_transform_spec(64, pretrained=False), "vit_tiny")


if __name__ == "__main__":
    main()
