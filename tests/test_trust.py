"""helpers.train.trust: the shortcut audit, bootstrap intervals, operating points and the leak check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.train import trust
from helpers.train.evaluation import compute_metrics
from helpers.train.trust import (
    bootstrap_interval,
    check_disjoint,
    expected_calibration_error,
    fit_temperature,
    format_interval,
    format_metric_intervals,
    image_metadata,
    metadata_baseline,
    metadata_table,
    metric_intervals,
    paired_bootstrap_difference,
    precision_at_base_rate,
    rates_at_threshold,
    reliability_bins,
    split_digest,
    threshold_for_fpr,
    write_equalised_copy,
)


def noise_image(seed: int, width: int = 64, height: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def smooth_image(seed: int, size: int = 64) -> Image.Image:
    """A photo-like image (smooth gradients plus a little noise), so JPEG tables matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 127 + 60 * np.sin(6 * x + rng.uniform(0, 6)) * np.cos(4 * y)
    pixels = base[..., None] + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def probs_from_p_fake(p_fake: torch.Tensor) -> torch.Tensor:
    return torch.stack([p_fake, 1 - p_fake], dim=1)  # (N, 2): column 0 = fake, as in the course


def noisy_detector(n: int, accuracy: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (N, 2) and targets of a detector right on about ``accuracy`` of n balanced images."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % 2
    right = torch.rand(n, generator=g) < accuracy
    confidence = 0.5 + 0.5 * torch.rand(n, generator=g)  # in [0.5, 1)
    p_true = torch.where(right, confidence, 1 - confidence)
    p_fake = torch.where(targets == 0, p_true, 1 - p_true)
    return probs_from_p_fake(p_fake), targets


# 1. Shortcut audit


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 95])
def test_jpeg_quality_is_estimated_from_the_quantisation_tables(tmp_path, quality):
    path = tmp_path / "photo.jpg"
    smooth_image(0).save(path, quality=quality)
    meta = image_metadata(path)
    assert meta["format"] == "JPEG" and abs(meta["jpeg_quality"] - quality) <= 2
    assert (meta["width"], meta["height"]) == (64, 64) and meta["bytes"] == path.stat().st_size


def test_png_has_no_jpeg_quality_and_exif_is_detected(tmp_path):
    noise_image(0).save(tmp_path / "plain.png")
    plain = image_metadata(tmp_path / "plain.png")
    assert plain["format"] == "PNG" and plain["jpeg_quality"] is None and plain["exif"] is False
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"  # Make
    noise_image(0).save(tmp_path / "with.jpg", exif=exif)
    noise_image(0).save(tmp_path / "without.jpg")
    assert image_metadata(tmp_path / "with.jpg")["exif"] is True
    assert image_metadata(tmp_path / "without.jpg")["exif"] is False


def shortcut_set(folder, n_per_class: int, containers_differ: bool, seed: int) -> list[tuple]:
    """Noise images whose pixels say nothing about the class; with ``containers_differ`` fakes are
    small PNGs and real photos larger JPEGs with EXIF, else every file is a 64x48 PNG."""
    folder.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    samples = []
    for i in range(n_per_class):
        fake, real = folder / f"fake_{i}.png", folder / f"real_{i}.png"
        noise_image(seed * 1000 + 2 * i).save(fake)
        if containers_differ:
            real = real.with_suffix(".jpg")
            noise_image(seed * 1000 + 2 * i + 1, 120 + i % 7, 90).save(real, quality=85 + i % 10, exif=exif)
        else:
            noise_image(seed * 1000 + 2 * i + 1).save(real)
        samples += [(fake, 0), (real, 1)]
    return samples


def test_metadata_baseline_finds_a_container_shortcut_and_nothing_without_one(tmp_path):
    for differ, name in ((True, "differ"), (False, "equal")):
        train = shortcut_set(tmp_path / f"{name}_train", 20, differ, seed=1)
        test = shortcut_set(tmp_path / f"{name}_test", 20, differ, seed=2)
        probs, targets = metadata_baseline(train, test)
        assert probs.shape == (40, 2) and targets.tolist() == [label for _, label in test]
        accuracy = compute_metrics(probs, targets)["accuracy"]
        if differ:
            assert accuracy == 1.0
        else:
            assert 0.3 <= accuracy <= 0.7  # chance: same size, format and (noise) file sizes
    rows = metadata_table(shortcut_set(tmp_path / "table", 4, True, seed=3))
    assert [row["class"] for row in rows] == ["fake_images", "real_images"]
    fake, real = rows
    assert fake["formats"] == "PNG 4" and fake["median JPEG quality"] is None and fake["with EXIF"] == 0
    assert real["formats"] == "JPEG 4" and 85 <= real["median JPEG quality"] <= 95 and real["with EXIF"] == 1
    assert fake["median size"] == "64x48" and real["smallest"] == "120x90" and real["largest"] == "123x90"


def test_write_equalised_copy_gives_one_size_and_one_encoding(tmp_path):
    noise_image(0, 200, 100).save(tmp_path / "wide.png")
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    smooth_image(1, 300).save(tmp_path / "photo.jpg", quality=98, exif=exif)
    samples = [(tmp_path / "wide.png", 0), (tmp_path / "photo.jpg", 1)]
    written = write_equalised_copy(samples, tmp_path / "out", size=32, quality=70)
    assert [p.relative_to(tmp_path / "out").as_posix() for p, _ in written] == [
        "fake_images/wide.jpg",
        "real_images/photo.jpg",
    ]
    for path, _ in written:
        meta = image_metadata(path)
        assert (meta["width"], meta["height"], meta["format"], meta["exif"]) == (32, 32, "JPEG", False)
        assert abs(meta["jpeg_quality"] - 70) <= 2


# 2. Uncertainty


def test_bootstrap_interval_contains_the_estimate_narrows_with_n_and_is_seeded():
    small = bootstrap_interval(*noisy_detector(100, 0.8), "accuracy", n_boot=200)
    large = bootstrap_interval(*noisy_detector(900, 0.8), "accuracy", n_boot=200)
    for result in (small, large):
        assert result["low"] < result["value"] < result["high"] and result["skipped"] == 0
    # the width shrinks like 1 / sqrt(n): 9 times the images, about a third of the width
    ratio = (large["high"] - large["low"]) / (small["high"] - small["low"])
    assert 0.2 < ratio < 0.5
    assert bootstrap_interval(*noisy_detector(100, 0.8), "accuracy", n_boot=200) == small
    assert bootstrap_interval(*noisy_detector(100, 0.8), "accuracy", n_boot=200, seed=1) != small
    auroc = bootstrap_interval(*noisy_detector(100, 0.8), "auroc", n_boot=200, level=0.9)
    assert auroc["low"] < auroc["value"] < auroc["high"] <= 1


def test_bootstrap_skips_resamples_where_the_metric_is_undefined():
    probs, targets = noisy_detector(4, 0.8)  # 4 images: some resamples hold a single class
    result = bootstrap_interval(probs, targets, "auroc", n_boot=200)
    assert 0 < result["skipped"] < 100  # (1/2)^4 * 2 = 1/8 of resamples expected
    with pytest.raises(ValueError, match="undefined"):
        bootstrap_interval(probs[targets == 0], targets[targets == 0], "auroc")


def test_format_interval_writes_rates_in_percent_and_auroc_as_a_number():
    result = {"metric": "accuracy", "value": 0.847, "low": 0.795, "high": 0.895, "level": 0.95, "n": 200}
    assert format_interval(result) == "84.7 % (95 % CI 79.5-89.5 %, n = 200)"
    result.update(metric="auroc", value=0.9123, low=0.871, high=0.951)
    assert format_interval(result) == "0.912 (95 % CI 0.87-0.95, n = 200)"
    result.update(metric="f1", value=0.035, low=-0.01, high=0.08, difference=True)
    assert format_interval(result) == "+3.5 points (95 % CI -1.0 to +8.0 points, n = 200)"


def test_paired_difference_resamples_the_same_images_for_both_models():
    probs, targets = noisy_detector(200, 0.75, seed=0)
    same = paired_bootstrap_difference(probs, probs, targets, "accuracy", n_boot=200)
    assert same["value"] == same["low"] == same["high"] == 0  # unpaired resampling would not give 0
    better = probs_from_p_fake(torch.where(targets == 0, 0.9, 0.1))  # always right
    diff = paired_bootstrap_difference(better, probs, targets, "accuracy", n_boot=200)
    accuracy = compute_metrics(probs, targets)["accuracy"]
    assert diff["value"] == pytest.approx(1 - accuracy) and 0 < diff["low"] < diff["value"] < diff["high"]
    assert diff["difference"] is True


# 3. Operating point


def test_threshold_for_fpr_flags_at_most_the_target_fraction_of_real_photos():
    probs, targets = noisy_detector(400, 0.8, seed=3)
    for target_fpr in (0.0, 0.01, 0.05, 0.29):
        threshold = threshold_for_fpr(probs, targets, target_fpr)
        rates = rates_at_threshold(probs, targets, threshold)
        assert rates["fpr"] <= target_fpr
        # the lowest such threshold: one notch lower flags one real photo too many
        assert rates_at_threshold(probs, targets, threshold - 1e-6)["fpr"] > target_fpr
    assert rates_at_threshold(probs, targets, threshold)["n_real"] == 200


def test_rates_at_threshold_against_hand_counts():
    p_fake = torch.tensor([0.9, 0.8, 0.4, 0.6, 0.7, 0.55, 0.1, 0.3])  # 4 fakes, then 4 real photos
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    rates = rates_at_threshold(probs_from_p_fake(p_fake), targets, 0.58)  # flags 0.9 0.8 0.6 | 0.7
    assert rates == {"tpr": 0.75, "fpr": 0.25, "n_fake": 4, "n_real": 4}
    assert rates_at_threshold(p_fake, targets, 0.58) == rates  # P(fake) alone works too


def test_precision_at_base_rate_matches_bayes_by_hand():
    # 10,000 images, 1 % fake: 100 fakes, 90 caught; 9,900 real, 495 flagged -> 90 / 585
    assert precision_at_base_rate(0.9, 0.05, 0.01) == pytest.approx(90 / 585)
    assert precision_at_base_rate(0.9, 0.05, 0.5) == pytest.approx(0.9 / 0.95)
    assert precision_at_base_rate(0.8, 0.0, 0.1) == 1.0
    assert math.isnan(precision_at_base_rate(0.0, 0.0, 0.1))


def test_temperature_scaling_lowers_the_calibration_error_of_an_overconfident_model():
    g = torch.Generator().manual_seed(0)
    targets = torch.arange(2000) % 2
    honest = torch.randn(2000, generator=g) * 2  # logit of the true class ~ N(0, 2^2)...
    true_logit = honest + 1.5  # ...shifted: right ~77 % of the time, as confident as it should be
    logits = torch.zeros(2000, 2)
    logits[torch.arange(2000), targets] = true_logit
    overconfident = logits * 4  # same predictions, four times too sure
    val, test = slice(0, 1000), slice(1000, 2000)
    temperature = fit_temperature(overconfident[val], targets[val])
    assert 3 < temperature < 5.5
    before = expected_calibration_error(overconfident[test].softmax(1), targets[test])
    after = expected_calibration_error((overconfident[test] / temperature).softmax(1), targets[test])
    assert after < before / 3
    # the reliability bins give torchmetrics' ECE back
    probs = (overconfident[test] / temperature).softmax(1)
    bins = reliability_bins(probs, targets[test], n_bins=10)
    ece = sum(b["count"] * abs(b["mean_score"] - b["fraction_fake"]) for b in bins) / 1000
    assert ece == pytest.approx(expected_calibration_error(probs, targets[test], n_bins=10), abs=1e-4)
    assert sum(b["count"] for b in bins) == 1000


# 4. Leak check


def test_split_digest_is_stable_and_check_disjoint_names_the_shared_files(tmp_path):
    train = [tmp_path / "data" / "fake_images" / f"fake_{i}.png" for i in range(10)]
    test = [tmp_path / "data" / "real_images" / f"real_{i}.png" for i in range(3)]
    digest = split_digest(train)
    assert digest == split_digest(reversed(train)) == split_digest(["fake_images/" + p.name for p in train])
    assert digest != split_digest(train[:-1]) and len(digest) == 64
    assert split_digest(train, root=tmp_path / "data") == digest
    check_disjoint(train, test)  # no overlap: no error
    with pytest.raises(ValueError, match=r"2 evaluation file\(s\).*fake_images/fake_3.png"):
        check_disjoint(train, [*test, train[3], f"/elsewhere/fake_images/{train[7].name}"])


def test_metric_intervals_share_resamples_and_agree_with_bootstrap_interval():
    probs, targets = noisy_detector(120, 0.8)
    both = metric_intervals(probs, targets, ("accuracy", "auroc"), n_boot=200)
    alone = bootstrap_interval(probs, targets, "accuracy", n_boot=200)
    assert both["accuracy"] == alone  # same seed, same resamples, same interval
    assert both["auroc"]["low"] <= both["auroc"]["value"] <= both["auroc"]["high"]
    lines = format_metric_intervals(both).splitlines()
    assert lines[0].startswith("accuracy") and "n = 120" in lines[0] and lines[1].startswith("auroc")
    with pytest.raises(ValueError, match="auroc"):
        metric_intervals(probs[targets == 0], targets[targets == 0], ("auroc",), n_boot=50)


def test_the_fast_metrics_of_an_interval_equal_compute_metrics_on_every_resample():
    probs, targets = noisy_detector(60, 0.7)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        i = torch.randint(len(targets), (len(targets),), generator=generator)
        computed = compute_metrics(probs[i], targets[i], positive_class=0)
        for metric in ("accuracy", "f1", "auroc", "precision"):
            assert trust._score(metric, probs[i], targets[i]) == pytest.approx(computed[metric], abs=1e-6)
    fakes = targets == 0
    assert trust._score("auroc", probs[fakes], targets[fakes]) is None  # one class: undefined, as there
