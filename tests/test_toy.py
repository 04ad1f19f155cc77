"""helpers.data.toy: the toy set is balanced, repeatable, reused when complete, and only its fingerprint
(not its colours) tells the classes apart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data import toy
from helpers.data.cache import CACHE_FOLDER, folder_dataset
from helpers.data.datasets import CLASS_NAMES, find_images
from helpers.data.toy import make_toy_dataset
from helpers.data.transforms import scratch_transforms


def _all_files(folder: Path) -> dict[str, bytes]:
    """Every file but the image cache's, whose index records the files' modification times."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and CACHE_FOLDER not in p.parts)
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def _logistic_regression_accuracy(
    x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, test: torch.Tensor
) -> float:
    x = (x - x[train].mean(0)) / x[train].std(0)
    weights = torch.zeros(x.shape[1] + 1, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200)

    def closure():
        optimizer.zero_grad()
        logits = x[train] @ weights[:-1] + weights[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[train])
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predictions = (x[test] @ weights[:-1] + weights[-1]) > 0
    return (predictions == y[test].bool()).double().mean().item()


def test_toy_dataset_layout_balance_and_byte_identical_for_the_same_seed(tmp_path):
    a = make_toy_dataset(tmp_path / "a", images_per_class=6, image_size=32, seed=3)
    b = make_toy_dataset(tmp_path / "b", images_per_class=6, image_size=32, seed=3)
    c = make_toy_dataset(tmp_path / "c", images_per_class=6, image_size=32, seed=4)
    assert a == tmp_path / "a"
    for name in CLASS_NAMES:
        files = sorted((a / name).iterdir())
        assert len(files) == 6
        for path in files:
            with Image.open(path) as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32))
    assert _all_files(a) == _all_files(b)  # marker and manifest included
    images_a = {k: v for k, v in _all_files(a).items() if k.endswith(".png")}
    images_c = {k: v for k, v in _all_files(c).items() if k.endswith(".png")}
    assert images_a.keys() == images_c.keys()
    assert all(images_a[k] != images_c[k] for k in images_a)
    samples, class_names = find_images(a)
    assert folder_dataset(samples, scratch_transforms(32)[1]).cached == len(samples)  # all decoded once
    assert class_names == list(CLASS_NAMES) and len(samples) == 12
    assert not list(tmp_path.glob(".*partial*")), "temporary build folders must be gone"


def test_toy_dataset_is_reused_when_complete_and_rebuilt_when_the_arguments_change(tmp_path):
    root = make_toy_dataset(tmp_path / "toy", images_per_class=4, image_size=16)
    first = root / "fake_images" / "fake_00000.png"
    stamp = first.stat().st_mtime_ns
    make_toy_dataset(root, images_per_class=4, image_size=16)
    assert first.stat().st_mtime_ns == stamp, "a complete toy folder must be reused, not rewritten"
    make_toy_dataset(root, images_per_class=5, image_size=16)
    assert len(list((root / "real_images").iterdir())) == 5
    assert json.loads((root / ".complete").read_text())["images_per_class"] == 5


def test_toy_dataset_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(ValueError, match="not empty"):
        make_toy_dataset(tmp_path / "mine", images_per_class=2, image_size=16)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"


def test_toy_colour_statistics_do_not_separate_the_classes(tmp_path):
    root = make_toy_dataset(tmp_path / "toy", images_per_class=150, image_size=32, seed=1)
    samples, _ = find_images(root, check=False)
    features = []
    for path, _ in samples:
        pixels = np.asarray(Image.open(path), dtype=np.float64) / 255.0  # (H, W, 3)
        features.append(np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))]))
    x = torch.tensor(np.array(features))  # (300, 6)
    y = torch.tensor([label for _, label in samples], dtype=torch.float64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    accuracy = _logistic_regression_accuracy(x, y, order[:200], order[200:])
    assert accuracy < 0.65, f"per-channel mean/std separate the toy classes ({accuracy:.2f})"


def test_toy_fakes_carry_the_generator_fingerprint_and_reals_do_not(tmp_path):
    root = make_toy_dataset(tmp_path / "toy", images_per_class=30, image_size=32)
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    assert {r["generator"] for r in rows if r["label"] == "0"} == set(toy.GENERATORS)
    assert {r["generator"] for r in rows if r["label"] == "1"} == {"none"}

    def nyquist_share(path: Path) -> float:  # spectral energy of patterns repeating every 2 pixels
        grey = np.asarray(Image.open(path), dtype=np.float64).mean(axis=2)  # (32, 32)
        spectrum = np.abs(np.fft.fft2(grey - grey.mean()))
        return (spectrum[16, :].sum() + spectrum[:, 16].sum()) / spectrum.sum()

    fakes = np.array([nyquist_share(root / r["file"]) for r in rows if r["label"] == "0"])
    reals = np.array([nyquist_share(root / r["file"]) for r in rows if r["label"] == "1"])
    assert np.median(fakes) > 2 * np.median(reals)
    threshold = np.median(np.concatenate([fakes, reals]))
    assert ((fakes > threshold).mean() + (reals <= threshold).mean()) / 2 > 0.8


def test_transposed_conv_upsample_leaves_a_checkerboard_on_a_flat_image():
    flat = np.ones((4, 4, 1), dtype=np.float32)
    out = toy._transposed_conv_upsample(flat, (0.3, 1.0, 0.6, 0.1))  # (8, 8, 1)
    assert out.shape == (8, 8, 1)
    # even output rows/cols collect taps 1 and 3 (1.1), odd ones taps 0 and 2 (0.9): gains multiply
    np.testing.assert_allclose(out[::2, ::2, 0], 1.1 * 1.1, rtol=1e-6)
    np.testing.assert_allclose(out[1::2, 1::2, 0], 0.9 * 0.9, rtol=1e-6)
    np.testing.assert_allclose(out[::2, 1::2, 0], 1.1 * 0.9, rtol=1e-6)
    nearest = toy._transposed_conv_upsample(np.arange(4, dtype=np.float32).reshape(2, 2, 1), (1.0, 1.0))
    np.testing.assert_array_equal(nearest[:, :, 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_toy_fake_keeps_the_colour_statistics_of_its_source_crop():
    crop = np.random.default_rng(0).uniform(0.2, 0.8, (16, 16, 3)).astype(np.float32)
    crop[:, :, 2] *= 0.5  # channels with different statistics
    for generator in toy.GENERATORS:
        fake = toy._generate_fake(crop, generator)
        assert fake.shape == crop.shape and not np.allclose(fake, crop)
        np.testing.assert_allclose(fake.mean(axis=(0, 1)), crop.mean(axis=(0, 1)), atol=1e-5)
        np.testing.assert_allclose(fake.std(axis=(0, 1)), crop.std(axis=(0, 1)), rtol=1e-4)


def test_phase_gains_of_the_dataset_generators_and_of_the_fainter_unseen_one():
    # The dataset's generators: odd output pixels get 0.9 of the weight or less, a clear checkerboard.
    for name, kernel in toy.GENERATORS.items():
        even, odd = toy.phase_gains(kernel)
        assert abs(even - odd) >= 0.1 - 1e-9, name
    # Lesson 04's unseen generator: the same kind of trace, five times fainter (1.0 versus 0.98).
    even, odd = toy.phase_gains(toy.UNSEEN_GENERATORS["deconv_faint"])
    assert (even, odd) == pytest.approx((1.0, 0.98))
    assert set(toy.UNSEEN_GENERATORS).isdisjoint(toy.GENERATORS)
    # Equal phases leave no trace: nearest-neighbour upsampling, kernel (1, 1).
    assert toy.phase_gains((1.0, 1.0)) == (1.0, 1.0)


def _checkerboard_strength(images: np.ndarray) -> float:
    """Median over images of the period-2 (Nyquist) amplitude along rows and columns, relative to the
    image's mean brightness: about (even gain - odd gain) / 2 for a fake, near 0 for a photograph."""
    x = images.astype(np.float64).mean(axis=-1)  # (N, H, W) grey
    sign = (-1.0) ** np.arange(x.shape[1])  # +1, -1, +1, ...
    along_rows = np.abs((x * sign[None, None, :]).mean(axis=(1, 2)))
    along_columns = np.abs((x * sign[None, :, None]).mean(axis=(1, 2)))
    return float(np.median((along_rows + along_columns) / 2 / x.mean(axis=(1, 2))))


def test_make_toy_images_is_repeatable_new_and_fainter():
    images, labels = toy.make_toy_images("deconv_faint", images_per_class=40, image_size=32, seed=1)
    assert images.shape == (80, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 40 + [1] * 40  # CLASS_NAMES order: fakes first
    again, _ = toy.make_toy_images("deconv_faint", images_per_class=40, image_size=32, seed=1)
    assert np.array_equal(images, again)
    other_seed, _ = toy.make_toy_images("deconv_faint", images_per_class=40, image_size=32, seed=0)
    assert not np.array_equal(images[40:], other_seed[40:])  # other crops
    # The faint generator's trace is measurable, and weaker than a dataset generator's on the same crops.
    strong, _ = toy.make_toy_images("deconv_3tap", images_per_class=40, image_size=32, seed=1)
    faint, real = _checkerboard_strength(images[:40]), _checkerboard_strength(images[40:])
    assert 1.5 * real < faint < 0.5 * _checkerboard_strength(strong[:40])  # measured: 0.007, 0.013, 0.058
    with pytest.raises(ValueError, match="unknown generator 'gan'"):
        toy.make_toy_images("gan", images_per_class=1)


def test_container_shortcut_variant_same_pixels_reals_as_jpeg_with_exif(tmp_path):
    plain = make_toy_dataset(tmp_path / "plain", images_per_class=4, image_size=32, seed=3)
    default_files = _all_files(plain)
    shortcut = make_toy_dataset(tmp_path / "shortcut", images_per_class=4, image_size=32, seed=3,
                                container_shortcut=True)  # fmt: skip
    assert (
        _all_files(make_toy_dataset(tmp_path / "plain2", 4, 32, 3, container_shortcut=False)) == default_files
    )
    for path in sorted((shortcut / "real_images").iterdir()):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (32, 32)
            assert image.getexif()[0x010F] == toy.SHORTCUT_EXIF_MAKE
    fakes = sorted((shortcut / "fake_images").iterdir())
    assert [p.name for p in fakes] == sorted(p.name for p in (plain / "fake_images").iterdir())
    assert all(p.read_bytes() == (plain / "fake_images" / p.name).read_bytes() for p in fakes)  # same PNGs
    real = np.asarray(Image.open(shortcut / "real_images" / "real_00000.jpg"), dtype=float)
    png = np.asarray(Image.open(plain / "real_images" / "real_00000.png"), dtype=float)
    assert np.abs(real - png).mean() < 8  # the same crop, through JPEG at quality 80
    rows = list(csv.DictReader(open(shortcut / "manifest.csv", encoding="utf-8")))
    assert all((shortcut / row["file"]).is_file() for row in rows)


def test_generators_option_uses_only_those_and_rejects_unknown(tmp_path):
    root = make_toy_dataset(
        tmp_path / "faint", images_per_class=3, image_size=32, generators=["deconv_faint"]
    )
    rows = list(csv.DictReader(open(root / "manifest.csv", encoding="utf-8")))
    assert {row["generator"] for row in rows if row["label"] == "0"} == {"deconv_faint"}
    with pytest.raises(ValueError, match="unknown generator"):
        make_toy_dataset(tmp_path / "bad", images_per_class=3, image_size=32, generators=["nope"])
