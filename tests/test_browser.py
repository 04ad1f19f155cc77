"""The web demo in a real browser: Debian's chromium, driven by Playwright for Python.

Skipped when /usr/bin/chromium is missing, except on CI (CI=true), where that is a failure. Saves a
screenshot to $FAKEVIT_SCREENSHOT when set (tools/demo_screenshot.py makes figures/demo.png the same way).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import demo
from helpers.inference import load_predictor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import demo_screenshot  # noqa: E402

pytestmark = pytest.mark.browser


def require(available: bool, reason: str) -> None:
    """Skip when something the test needs is missing, but fail on CI, which must run this test."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run on CI)")
    pytest.skip(reason)


def test_upload_classify_and_read_the_probabilities_off_the_page(tmp_path):
    require(
        Path(demo_screenshot.CHROMIUM).exists(),
        f"{demo_screenshot.CHROMIUM} not found (apt-get install chromium)",
    )
    require(
        all(importlib.util.find_spec(module) for module in ("gradio", "playwright")),
        "gradio or playwright is not installed (pip install -e '.[demo]')",
    )
    checkpoint = demo_screenshot.random_tiny_checkpoint(tmp_path / "checkpoint", seed=1)
    image = tmp_path / "upload.png"
    Image.radial_gradient("L").convert("RGB").resize((96, 80)).save(image)
    screenshot = Path(os.environ.get("FAKEVIT_SCREENSHOT") or tmp_path / "demo.png")

    try:
        with demo_screenshot.running_demo(checkpoint, tmp_path / "server") as url:
            page = demo_screenshot.classify_in_browser(url, image, screenshot=screenshot)
    except RuntimeError as err:  # the server did not start: show its output
        pytest.fail(str(err))

    expected = demo.classify(load_predictor(checkpoint), image)  # the same model, in this process
    shown = page["probabilities"]
    assert set(shown) == {"fake", "real"} == set(expected)
    assert sum(shown.values()) == pytest.approx(1.0, abs=1e-4)
    assert shown == pytest.approx(expected, abs=1e-4)
    assert page["percentages"] == pytest.approx({k: 100 * p for k, p in expected.items()}, abs=0.51)
    assert page["top"] == max(expected, key=expected.get)
    assert (
        0.01 < expected["fake"] < 0.99
    )  # not a degenerate model, so the checks above can tell classes apart
    assert screenshot.stat().st_size > 10_000  # a real PNG of the page, not an empty file
    with Image.open(screenshot) as shot:
        assert shot.width >= 1000
