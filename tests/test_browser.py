"""The web demo in a real browser: tools/demo_screenshot.py, run as a program, uploads an image
through Debian's chromium (driven by Playwright) and reports what the page shows.

Skipped when /usr/bin/chromium is missing, except on CI (CI=true), where that is a failure. Saves the
screenshot to $FAKEVIT_SCREENSHOT when set (`make figures` makes figures/demo.png the same way).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers.serving import demo
from helpers.serving.inference import load_predictor

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FAKEVIT_CHROMIUM", "/usr/bin/chromium")  # as tools/demo_screenshot.py

pytestmark = pytest.mark.browser


def require(available: bool, reason: str) -> None:
    """Skip when something the test needs is missing, but fail on CI, which must run this test."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run on CI)")
    pytest.skip(reason)


def test_upload_classify_and_read_the_probabilities_off_the_page(tmp_path, tiny_detector):
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} not found (apt-get install chromium)")
    require(
        all(importlib.util.find_spec(module) for module in ("gradio", "playwright")),
        "gradio or playwright is not installed (pip install -e '.[demo]')",
    )
    _, detector = tiny_detector(tmp_path / "detector", seed=1)
    image = tmp_path / "upload.png"
    Image.radial_gradient("L").convert("RGB").resize((96, 80)).save(image)
    screenshot = Path(os.environ.get("FAKEVIT_SCREENSHOT") or tmp_path / "demo.png")
    report = tmp_path / "page.json"

    command = [sys.executable, str(ROOT / "tools" / "demo_screenshot.py"), "--detector", str(detector)]
    command += ["--image", str(image), "--out", str(screenshot), "--report", str(report)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = json.loads(report.read_text())

    expected = demo.classify(load_predictor(detector), image)  # the same model, in this process
    shown = page["probabilities"]
    assert set(shown) == {"fake", "real"} == set(expected)
    assert sum(shown.values()) == pytest.approx(1.0, abs=1e-4)
    assert shown == pytest.approx(expected, abs=1e-4)
    assert page["percentages"] == pytest.approx({k: 100 * p for k, p in expected.items()}, abs=0.51)
    assert page["top"] == max(expected, key=expected.get)
    # not a degenerate model, so the checks above can tell the classes apart
    assert 0.01 < expected["fake"] < 0.99
    assert screenshot.stat().st_size > 10_000  # a real PNG of the page, not an empty file
    with Image.open(screenshot) as shot:
        assert shot.width >= 1000
