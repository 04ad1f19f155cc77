"""The toy fakes' fingerprint in the mean spectrum (helpers.data.toy), and tools/toy_figures.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.data.toy import make_toy_dataset, mean_log_spectrum

TOOL = Path(__file__).resolve().parents[1] / "tools" / "toy_figures.py"


def toy_figures(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300)


def test_mean_log_spectrum_shows_a_checkerboard_at_the_nyquist_frequency():
    rng = np.random.default_rng(0)
    smooth = [rng.normal(size=(16, 16)).cumsum(0).cumsum(1) for _ in range(4)]
    checker = np.indices((16, 16)).sum(0) % 2 * 10.0
    plain, marked = mean_log_spectrum(smooth), mean_log_spectrum([s + checker for s in smooth])
    assert plain.shape == (16, 16)
    assert marked[0, 0] - plain[0, 0] > 2  # fftshift puts the (8, 8) Nyquist corner at [0, 0]
    np.testing.assert_allclose(marked[8, 8], 0, atol=1e-9)  # the mean is removed
    with pytest.raises(ValueError, match="same size"):
        mean_log_spectrum([np.zeros((4, 4)), np.zeros((4, 5))])


def test_a_hann_window_removes_the_cross_from_the_image_edges_and_keeps_a_checkerboard():
    # A ramp does not repeat: its right edge does not meet its left one. The FFT sees that jump as an
    # edge, whose energy spreads along the axes through the centre of the spectrum (the "cross").
    y, x = np.indices((32, 32), dtype=float)
    ramps = [a * x + b * y for a, b in ((1, 0.5), (0.3, 1), (2, 2))]
    plain, windowed = mean_log_spectrum(ramps), mean_log_spectrum(ramps, window=True)
    on_axes = np.r_[plain[16, :14], plain[:14, 16]].mean(), np.r_[windowed[16, :14], windowed[:14, 16]].mean()
    assert on_axes[0] > 3 and on_axes[1] < 0.5 * on_axes[0]
    np.testing.assert_allclose(windowed[16, 16], 0, atol=1e-9)  # the mean is removed, with the window too
    checker = np.indices((32, 32)).sum(0) % 2 * 10.0
    marked = mean_log_spectrum([r + checker for r in ramps], window=True)
    assert marked[0, 0] - windowed[0, 0] > 2  # the period-2 peak survives the window


def test_figures_command_draws_samples_and_spectra(tmp_path):
    toy = make_toy_dataset(tmp_path / "toy", images_per_class=8, image_size=16)
    result = toy_figures("--data", str(toy), "--out", str(tmp_path / "figs"))
    assert result.returncode == 0, result.stderr
    for name in ("toy_samples.png", "toy_spectra.png"):
        with Image.open(tmp_path / "figs" / name) as figure:
            assert figure.size[0] > 500


def test_figures_command_without_the_folder_is_a_one_line_usage_error(tmp_path):
    result = toy_figures("--data", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(tmp_path / "nowhere") in lines[0], lines


def nyquist_peak(spectrum: np.ndarray) -> float:
    """A period-2 pattern in a :func:`mean_log_spectrum`: Nyquist row and column minus two steps in."""
    border = np.r_[spectrum[0, 1:], spectrum[1:, 0]].mean()
    inside = np.r_[spectrum[2, 2:], spectrum[2:, 2]].mean()
    return float(border - inside)


def test_nyquist_peak_measures_a_period_2_pattern():
    # As in the toy fakes, the pattern scales the content: even and odd rows and columns get
    # different gains, which copies the content's spectrum onto the Nyquist row and column.
    rng = np.random.default_rng(1)
    smooth = [rng.normal(size=(32, 32)).cumsum(0).cumsum(1) for _ in range(4)]
    y, x = np.indices((32, 32))
    gains = (1 + 0.2 * (-1) ** x) * (1 + 0.2 * (-1) ** y)
    plain = nyquist_peak(mean_log_spectrum(smooth, window=True))
    marked = nyquist_peak(mean_log_spectrum([s * gains for s in smooth], window=True))
    assert abs(plain) < 0.5 and marked > plain + 1.0
