"""Start the web demo, classify one image in a real browser, and save a screenshot (figures/demo.png).

    python tools/demo_screenshot.py [--detector DIR] [--image PATH] [--out figures/demo.png] [--report JSON]

The browser is Debian's chromium (``apt-get install chromium``, or the binary named by
$FAKEVIT_CHROMIUM) driven by Playwright for Python; no browser is ever downloaded. Without
``--detector`` the trained detector in build/detector is used if there is one (``make run`` writes
it), else an untrained tiny ViT (its probabilities then mean nothing). ``--report`` writes what was
read off the page as JSON; ``tests/test_browser.py`` runs this script and checks that report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def main(argv: Sequence[str] | None = None) -> None:
    from helpers import course
    from helpers.data.datasets import CLASS_NAMES
    from helpers.data.toy import make_toy_dataset
    from helpers.data.transforms import eval_transform_spec
    from helpers.model.vit import ViT, get_config
    from helpers.serving.demo_server import running_demo
    from helpers.serving.inference import save_detector

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, default=None, help="default: build/detector if it exists")
    parser.add_argument("--image", type=Path, default=None, help="image to classify (default: a toy image)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "figures" / "demo.png")
    parser.add_argument("--report", type=Path, default=None, help="write what the page showed as JSON here")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.exit(
            2, f"{CHROMIUM} not found: `sudo apt-get install chromium` (Debian), or set $FAKEVIT_CHROMIUM.\n"
        )

    with tempfile.TemporaryDirectory(prefix="fakevit-screenshot-") as tmp:
        workdir = Path(tmp)
        detector = args.detector or course.detector_dir()
        if args.detector is None and not (detector / "config.json").is_file():
            print(f"No detector in {detector}: using an UNTRAINED tiny ViT (make one with `make run`).")
            spec = eval_transform_spec(32, pretrained=False)
            model = ViT(get_config("vit_tiny", image_size=32, depth=1))
            detector = save_detector(model, workdir / "detector", CLASS_NAMES, spec, "vit_tiny")
        image = (
            args.image
            or make_toy_dataset(workdir / "toy", images_per_class=1) / "real_images" / "real_00000.png"
        )
        with running_demo(detector.resolve(), workdir / "server") as url:
            shown = classify_in_browser(url, image.resolve(), screenshot=args.out)
    if args.report is not None:
        args.report.write_text(json.dumps(shown, indent=2) + "\n", encoding="utf-8")
    print(f"{image.name}: {shown['top']} {shown['percentages']}; screenshot saved to {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))  # `python tools/demo_screenshot.py` works without installing helpers
    main()
