"""Start the web demo, classify one image in a real browser, and save a screenshot (figures/demo.png).

    python tools/demo_screenshot.py [--checkpoint DIR] [--image PATH] [--out figures/demo.png]

The browser is Debian's chromium (``apt-get install chromium``, or the binary named by
$FAKEVIT_CHROMIUM) driven by Playwright for Python; no browser is ever downloaded. Without
``--checkpoint`` the trained model in build/checkpoint is used if there is one, else a tiny ViT
with random weights (its probabilities then mean nothing). ``tests/test_demo.py`` and
``tests/test_browser.py`` use :func:`running_demo`, :func:`classify_in_browser` and
:func:`random_tiny_checkpoint` from this file too, so the screenshot shows what the tests check.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
APP = REPO_ROOT / "app" / "app.py"
# Debian's chromium; $FAKEVIT_CHROMIUM may name another installed Chromium or Chrome binary.
CHROMIUM = os.environ.get("FAKEVIT_CHROMIUM", "/usr/bin/chromium")
# Headless, no sandbox (containers), and nothing that phones home (the tests run offline).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers; raise RuntimeError with the server's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"the demo server exited with code {server.returncode} before answering.\n"
                f"Its output ({log}):\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise RuntimeError(
        f"the demo server did not answer at {url} within {timeout:.0f} s.\n"
        f"Its output ({log}):\n{log.read_text(errors='replace')}"
    )


@contextmanager
def running_demo(
    checkpoint: Path, workdir: Path, *, extra_args: Sequence[str] = (), timeout: float = 90.0
) -> Iterator[str]:
    """Run ``python app/app.py --checkpoint ...`` on a free loopback port; yield its URL; always stop it.

    The server runs in ``workdir`` (its examples and Gradio's upload cache go there) and writes its
    output to ``workdir/server.log`` (a file, not a pipe, which would block the server once full).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = workdir / "server.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(workdir / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False"}
    command = [
        sys.executable,
        str(APP),
        "--checkpoint",
        str(checkpoint),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [*command, *extra_args], cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_until_serving(url, server, log, timeout)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def classify_in_browser(
    url: str,
    image: Path,
    *,
    screenshot: Path | None = None,
    chromium: str = CHROMIUM,
    timeout_ms: int = 60_000,
) -> dict:
    """Upload ``image`` on the demo page, click Classify, and read the result off the page.

    Returns ``{"top": label shown in large type, "probabilities": {class: value of its bar's
    <meter>}, "percentages": {class: the "73%" text next to the bar, as a number}}``. Saves a
    screenshot of the page when asked.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 700})
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            page.locator("#upload input[type=file]").set_input_files(str(image))
            page.locator("#upload img").first.wait_for()  # the preview: the upload has reached the server
            page.locator("#classify").click()
            page.locator("#prediction [data-testid=label-output-value]").wait_for()
            top = page.locator("#prediction [data-testid=label-output-value]").inner_text().strip()
            probabilities, percentages = {}, {}
            for bar in page.locator("#prediction [data-testid$=-confidence-set]").all():
                name = bar.locator("dt").inner_text().strip()
                probabilities[name] = float(bar.locator("meter").get_attribute("value"))
                percentages[name] = float(bar.locator("dd").inner_text().strip().removesuffix("%"))
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return {"top": top, "probabilities": probabilities, "percentages": percentages}
        finally:
            browser.close()


def random_tiny_checkpoint(out_dir: Path, seed: int = 0) -> Path:
    """A checkpoint of a small ViT with random weights (and a random head, so outputs differ from 50/50)."""
    import torch

    from helpers.data import CLASS_NAMES, eval_transform_spec
    from helpers.inference import save_for_inference
    from helpers.vit import ViT, get_config

    torch.manual_seed(seed)
    model = ViT(get_config("vit_tiny", image_size=32, depth=1))
    torch.nn.init.normal_(model.head.weight, std=0.1)  # the head starts at zero: 50/50 for every image
    return save_for_inference(
        model, out_dir, CLASS_NAMES, eval_transform_spec(32, pretrained=False), "vit_tiny"
    )


def main(argv: Sequence[str] | None = None) -> None:
    from helpers import course
    from helpers.data import make_toy_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="default: build/checkpoint if it exists"
    )
    parser.add_argument("--image", type=Path, default=None, help="image to classify (default: a toy image)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "figures" / "demo.png")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.exit(
            2, f"{CHROMIUM} not found: `sudo apt-get install chromium` (Debian), or set $FAKEVIT_CHROMIUM.\n"
        )

    with tempfile.TemporaryDirectory(prefix="fakevit-screenshot-") as tmp:
        workdir = Path(tmp)
        checkpoint = args.checkpoint or course.checkpoint_dir()
        if args.checkpoint is None and not (checkpoint / "config.json").is_file():
            print(
                f"No checkpoint in {checkpoint}: using a tiny ViT with RANDOM weights (make one with `make run`)."
            )
            checkpoint = random_tiny_checkpoint(workdir / "checkpoint")
        image = (
            args.image
            or make_toy_dataset(workdir / "toy", images_per_class=1) / "real_images" / "real_00000.png"
        )
        with running_demo(checkpoint.resolve(), workdir / "server") as url:
            shown = classify_in_browser(url, image.resolve(), screenshot=args.out)
    print(f"{image.name}: {shown['top']} {shown['percentages']}; screenshot saved to {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))  # `python tools/demo_screenshot.py` works without installing helpers
    main()
