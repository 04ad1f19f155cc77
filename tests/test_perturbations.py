"""helpers.data.perturbations: JPEG and resizing keep the size and remove what lesson 05 says they remove."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers.data.perturbations import down_up, jpeg


@pytest.fixture
def checkered(textured_rgb) -> Image.Image:
    """A 64 x 64 photo-like image with a faint period-2 checkerboard added (a stand-in fingerprint)."""
    pixels = textured_rgb(64, 64, seed=3).astype(float)
    pixels += (np.indices((64, 64)).sum(0) % 2 * 12.0 - 6.0)[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _checker_strength(image: Image.Image) -> float:
    """Amplitude of the period-2 checkerboard: |mean of grey x (-1)^(x+y)|."""
    grey = np.asarray(image, dtype=float).mean(axis=2)
    return abs((grey * (1 - 2 * (np.indices(grey.shape).sum(0) % 2))).mean())


def test_every_perturbation_keeps_rgb_and_the_size(checkered):
    for changed in (jpeg(checkered, 75), down_up(checkered, 0.5), down_up(checkered, 0.75)):
        assert changed.mode == "RGB" and changed.size == checkered.size
    assert np.array_equal(np.asarray(down_up(checkered, 1.0)), np.asarray(checkered))


def test_shrinking_removes_a_period_2_pattern_and_jpeg_weakens_it(checkered):
    before = _checker_strength(checkered)
    assert before > 5
    assert _checker_strength(down_up(checkered, 0.5)) < 0.1 * before
    assert 0.1 * before < _checker_strength(jpeg(checkered, 95)) <= before
    assert _checker_strength(jpeg(checkered, 30)) < _checker_strength(jpeg(checkered, 95))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda im: jpeg(im, 0), "quality"),
        (lambda im: jpeg(im, 100), "quality"),
        (lambda im: down_up(im, 1.5), "factor"),
        (lambda im: down_up(im, 0), "factor"),
    ],
)
def test_bad_settings_are_refused_with_the_value(checkered, call, message):
    with pytest.raises(ValueError, match=message):
        call(checkered)
