"""Tests for helpers.data: toy set, download/extract, safe loading, indexing, splits, loaders, transforms.

Every bad file is made here in ``tmp_path``; the only thing faked is the network call
(``hf_hub_download``), which returns a small zip built by the test.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data
from helpers.data import (
    CLASS_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderDataset,
    ImageLoadError,
    build_eval_transform,
    create_dataloaders,
    download_fake_or_real,
    eval_transform_spec,
    find_images,
    get_dataset,
    load_image_rgb,
    make_toy_dataset,
    mean_log_spectrum,
    pretrained_transforms,
    scratch_transforms,
    stratified_split,
)

# ------------------------------------------------------------------------------------------------
# helpers for the tests
# ------------------------------------------------------------------------------------------------


def _png_bytes(image: Image.Image, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=save_kwargs.pop("format", "PNG"), **save_kwargs)
    return buffer.getvalue()


def _random_rgb(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _image_folder(root: Path, per_class: dict[str, int], size=(20, 16), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            _random_rgb(rng, *size).save(root / name / f"{i:03d}.png")
    return root


def _all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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


# ------------------------------------------------------------------------------------------------
# toy dataset
# ------------------------------------------------------------------------------------------------


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
    assert {r["generator"] for r in rows if r["label"] == "0"} == set(data.TOY_GENERATORS)
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
    out = data._transposed_conv_upsample(flat, (0.3, 1.0, 0.6, 0.1))  # (8, 8, 1)
    assert out.shape == (8, 8, 1)
    # even output rows/cols collect taps 1 and 3 (1.1), odd ones taps 0 and 2 (0.9): gains multiply
    np.testing.assert_allclose(out[::2, ::2, 0], 1.1 * 1.1, rtol=1e-6)
    np.testing.assert_allclose(out[1::2, 1::2, 0], 0.9 * 0.9, rtol=1e-6)
    np.testing.assert_allclose(out[::2, 1::2, 0], 1.1 * 0.9, rtol=1e-6)
    nearest = data._transposed_conv_upsample(np.arange(4, dtype=np.float32).reshape(2, 2, 1), (1.0, 1.0))
    np.testing.assert_array_equal(nearest[:, :, 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_toy_fake_keeps_the_colour_statistics_of_its_source_crop():
    crop = np.random.default_rng(0).uniform(0.2, 0.8, (16, 16, 3)).astype(np.float32)
    crop[:, :, 2] *= 0.5  # channels with different statistics
    for generator in data.TOY_GENERATORS:
        fake = data._toy_fake(crop, generator)
        assert fake.shape == crop.shape and not np.allclose(fake, crop)
        np.testing.assert_allclose(fake.mean(axis=(0, 1)), crop.mean(axis=(0, 1)), atol=1e-5)
        np.testing.assert_allclose(fake.std(axis=(0, 1)), crop.std(axis=(0, 1)), rtol=1e-4)


def test_make_toy_command_line(tmp_path, capsys):
    out = tmp_path / "cli_toy"
    assert (
        data.main(
            ["make-toy", "--out", str(out), "--images-per-class", "3", "--image-size", "16", "--seed", "2"]
        )
        == 0
    )
    assert "6 images ready" in capsys.readouterr().out
    assert len(find_images(out)[0]) == 6


# ------------------------------------------------------------------------------------------------
# download_fake_or_real (only hf_hub_download is replaced)
# ------------------------------------------------------------------------------------------------


def _dataset_zip(path: Path, per_class: int = 3, prefix: str = "train/") -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for name in CLASS_NAMES:
            archive.writestr(f"{prefix}{name}/", "")
            for i in range(per_class):
                archive.writestr(
                    f"{prefix}{name}/{i}.jpg", _png_bytes(_random_rgb(rng, 60, 40), format="JPEG")
                )
        archive.writestr(f"__MACOSX/{prefix}fake_images/._0.jpg", b"apple double junk")
    return path


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """hf_hub_download replaced by a function returning a small zip; ``calls`` counts the calls."""
    zip_path = _dataset_zip(tmp_path / "hub_cache_train.zip")
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs.get("repo_type")))
        return str(zip_path)

    monkeypatch.setattr(data, "hf_hub_download", fake_download)
    return calls


def test_download_extracts_checks_and_is_idempotent(tmp_path, fake_hub):
    root = tmp_path / "fake_or_real"
    folder = download_fake_or_real(root, expected_count=6)
    assert folder == root / "train"
    assert fake_hub == [(data.FAKE_OR_REAL_REPO, "train.zip", "dataset")]
    samples, class_names = find_images(folder)
    assert class_names == list(CLASS_NAMES) and len(samples) == 6
    assert json.loads((root / ".complete").read_text())["count"] == 6
    assert not (root / "__MACOSX").exists() and not (root / ".train.partial").exists()
    stamp = (folder / "fake_images" / "0.jpg").stat().st_mtime_ns
    assert download_fake_or_real(root, expected_count=6) == folder
    assert len(fake_hub) == 1, "a complete dataset must not be downloaded again"
    assert (folder / "fake_images" / "0.jpg").stat().st_mtime_ns == stamp


def test_interrupted_extraction_leaves_nothing_that_looks_complete(tmp_path, fake_hub, monkeypatch):
    root = tmp_path / "fake_or_real"
    real_extract = data._extract_member
    count = {"n": 0}

    def extract_then_die(*args):
        count["n"] += 1
        if count["n"] == 4:
            raise KeyboardInterrupt  # the user pressed stop half-way
        real_extract(*args)

    monkeypatch.setattr(data, "_extract_member", extract_then_die)
    with pytest.raises(KeyboardInterrupt):
        download_fake_or_real(root, expected_count=6)
    assert not (root / "train").exists() and not (root / ".complete").exists()
    assert (root / ".train.partial").exists()  # the half-done folder has a name that says so
    monkeypatch.setattr(data, "_extract_member", real_extract)
    folder = download_fake_or_real(root, expected_count=6)
    assert len(find_images(folder)[0]) == 6
    assert not (root / ".train.partial").exists()


def test_download_rejects_an_archive_with_the_wrong_number_of_images(tmp_path, fake_hub):
    root = tmp_path / "fake_or_real"
    with pytest.raises(RuntimeError, match="holds 6 images, expected 6750"):
        download_fake_or_real(root)
    assert not (root / ".complete").exists() and not (root / "train").exists()


def test_download_offline_error_says_how_to_place_the_file_by_hand(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError(
            "Cannot find the requested files in the disk cache and outgoing traffic has been disabled."
        )

    monkeypatch.setattr(data, "hf_hub_download", offline)
    root = tmp_path / "fake_or_real"
    with pytest.raises(RuntimeError) as error:
        download_fake_or_real(root)
    message = str(error.value)
    assert "LocalEntryNotFoundError" in message and "outgoing traffic has been disabled" in message
    assert (
        data.FAKE_OR_REAL_URL in message
        and str(root / "train.zip") in message
        and "run this again" in message
    )


def test_download_with_hf_hub_offline_fails_fast_through_the_real_client(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(RuntimeError, match="place the data by hand"):
        download_fake_or_real(tmp_path / "fake_or_real")


def test_download_uses_a_zip_placed_by_hand_without_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be used when train.zip was placed by hand")

    monkeypatch.setattr(data, "hf_hub_download", no_network)
    root = tmp_path / "fake_or_real"
    root.mkdir()
    _dataset_zip(root / "train.zip", per_class=2, prefix="")  # a zip without the top-level train/ folder
    folder = download_fake_or_real(root, expected_count=4)
    assert sorted(p.name for p in folder.iterdir()) == list(CLASS_NAMES)


def test_download_max_side_writes_a_resized_copy_with_the_same_layout(tmp_path, fake_hub):
    root = tmp_path / "fake_or_real"
    small = download_fake_or_real(root, max_side=20, expected_count=6)
    assert small == tmp_path / "fake_or_real_max20" / "train"
    samples, class_names = find_images(small)
    assert class_names == list(CLASS_NAMES) and len(samples) == 6
    for path, _ in samples:
        assert min(Image.open(path).size) == 20 and max(Image.open(path).size) == 30  # 60x40 -> 30x20
    stamp = samples[0][0].stat().st_mtime_ns
    assert download_fake_or_real(root, max_side=20, expected_count=6) == small
    assert samples[0][0].stat().st_mtime_ns == stamp and len(fake_hub) == 1
    copy = data.make_resized_copy(root / "train", tmp_path / "big", max_side=100)  # no-op size: same bytes
    assert _all_files(copy / "fake_images") == _all_files(root / "train" / "fake_images")


# ------------------------------------------------------------------------------------------------
# load_image_rgb
# ------------------------------------------------------------------------------------------------


def _save(tmp_path: Path, name: str, image: Image.Image, **kwargs) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_load_image_rgb_converts_every_mode_to_rgb(tmp_path):
    rgba = Image.new("RGBA", (4, 3), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent: shown on white
    palette = Image.new("P", (5, 5), 1)
    palette.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    gray16 = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 255, 0))]
    gif = tmp_path / "animated.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    cases = {
        "rgba.png": (_save(tmp_path, "rgba.png", rgba), (4, 3)),
        "la.png": (_save(tmp_path, "la.png", Image.new("LA", (3, 3), (100, 255))), (3, 3)),
        "l.png": (_save(tmp_path, "l.png", Image.new("L", (3, 3), 77)), (3, 3)),
        "p.png": (_save(tmp_path, "p.png", palette, transparency=0), (5, 5)),
        "cmyk.jpg": (_save(tmp_path, "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0))), (8, 8)),
        "16bit.png": (_save(tmp_path, "16bit.png", gray16), (3, 1)),
        "1bit.png": (_save(tmp_path, "1bit.png", Image.new("1", (7, 2), 1)), (7, 2)),
        "1x1.png": (_save(tmp_path, "1x1.png", Image.new("RGB", (1, 1), (1, 2, 3))), (1, 1)),
        "animated.gif": (gif, (6, 6)),
    }
    loaded = {}
    for name, (path, size) in cases.items():
        image = load_image_rgb(path)
        assert image.mode == "RGB" and image.size == size, name
        loaded[name] = np.asarray(image)
    assert tuple(loaded["rgba.png"][0, 0]) == (255, 255, 255) and tuple(loaded["rgba.png"][0, 1]) == (
        10,
        20,
        30,
    )
    assert tuple(loaded["la.png"][0, 0]) == (100, 100, 100)
    assert tuple(loaded["p.png"][0, 0]) == (200, 30, 40)
    assert loaded["16bit.png"][0, :, 0].tolist() == [0, 128, 255]  # scaled, not clipped at 255
    assert loaded["1bit.png"].min() == 255
    assert tuple(loaded["1x1.png"][0, 0]) == (1, 2, 3)
    red, green, blue = loaded["animated.gif"][3, 3]
    assert red > 200 and green < 50, "the first frame of the animation"
    cmyk_red = loaded["cmyk.jpg"][4, 4]
    assert cmyk_red[0] > 200 and cmyk_red[1] < 60 and cmyk_red[2] < 60
    with open(cases["l.png"][0], "rb") as handle:  # file objects work too
        assert load_image_rgb(handle).mode == "RGB"
    for name, (path, _) in cases.items():  # and images PIL has already opened, with the same pixels
        with Image.open(path) as opened:
            assert np.array_equal(np.asarray(load_image_rgb(opened)), loaded[name]), name


def test_load_image_rgb_raises_image_load_error_naming_the_file(tmp_path, monkeypatch):
    photo = _png_bytes(_random_rgb(np.random.default_rng(0), 64, 64), format="JPEG")
    bad = {
        "empty.png": b"",
        "truncated.jpg": photo[: len(photo) // 2],
        "truncated.png": _png_bytes(_random_rgb(np.random.default_rng(1), 64, 64))[:300],
        "notes.png": b"this is a text file with an image extension\n" * 5,
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ImageLoadError, match=name):
            load_image_rgb(tmp_path / name)
    big = _save(tmp_path, "bomb.png", Image.new("L", (100, 100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels > 2 x limit: PIL refuses
    with pytest.raises(ImageLoadError, match="bomb.png.*decompression-bomb"):
        load_image_rgb(big)
    assert issubclass(ImageLoadError, ValueError)
    with pytest.raises(ImageLoadError, match="in-memory"):
        load_image_rgb(io.BytesIO(b"nope"))
    with pytest.raises(FileNotFoundError):
        load_image_rgb(tmp_path / "missing.png")


# ------------------------------------------------------------------------------------------------
# find_images and ImageFolderDataset
# ------------------------------------------------------------------------------------------------


def test_find_images_skips_undecodable_files_with_one_warning(tmp_path, monkeypatch):
    root = _image_folder(tmp_path / "ds", {"fake_images": 3, "real_images": 2})
    (root / "real_images" / "nested").mkdir()
    _random_rgb(np.random.default_rng(5), 8, 8).save(root / "real_images" / "nested" / "deep.JPG")
    (root / "fake_images" / "empty.png").write_bytes(b"")
    (root / "fake_images" / "truncated.png").write_bytes(
        (root / "fake_images" / "000.png").read_bytes()[:200]
    )
    (root / "real_images" / "text.jpg").write_text("not an image")
    Image.new("L", (100, 100)).save(root / "real_images" / "bomb.png")
    (root / "real_images" / "labels.csv").write_text("a,b\n")  # not an image extension: silently ignored
    (root / "real_images" / ".hidden.png").write_bytes(b"")  # hidden: ignored
    (root / "README.md").write_text("top-level files are not classes")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples, class_names = find_images(root)
    assert len(caught) == 1
    message = str(caught[0].message)
    for name in ("empty.png", "truncated.png", "text.jpg", "bomb.png"):
        assert name in message
    assert "labels.csv" not in message and ".hidden" not in message and "Skipped 4" in message
    assert class_names == ["fake_images", "real_images"]
    assert sorted((p.name, label) for p, label in samples) == [
        ("000.png", 0),
        ("000.png", 1),
        ("001.png", 0),
        ("001.png", 1),
        ("002.png", 0),
        ("deep.JPG", 1),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder gives no warning at all
        find_images(_image_folder(tmp_path / "clean", {"fake_images": 1, "real_images": 1}))


@pytest.mark.parametrize("case", ["missing", "empty", "single_class", "only_bad_files"])
def test_find_images_rejects_folders_without_two_classes(tmp_path, case):
    root = tmp_path / case
    if case == "empty":
        root.mkdir()
    elif case == "single_class":
        _image_folder(root, {"real_images": 2})
        (root / "fake_images").mkdir()
    elif case == "only_bad_files":
        _image_folder(root, {"real_images": 2})
        (root / "fake_images").mkdir()
        (root / "fake_images" / "broken.png").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError) as error:
            find_images(root)
    assert str(root) in str(error.value) and "root/fake_images/*.png" in str(error.value)


def test_image_folder_dataset_returns_tensors_and_targets(tmp_path):
    root = _image_folder(tmp_path / "ds", {"fake_images": 2, "real_images": 3}, size=(20, 16))
    samples, _ = find_images(root)
    _, eval_tf = scratch_transforms(8)
    dataset = ImageFolderDataset(samples, eval_tf)
    assert len(dataset) == 5 and dataset.targets == [0, 0, 1, 1, 1]
    image, label = dataset[4]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32 and label == 1
    assert isinstance(ImageFolderDataset(samples)[0][0], Image.Image)


# ------------------------------------------------------------------------------------------------
# stratified_split and create_dataloaders
# ------------------------------------------------------------------------------------------------


def test_stratified_split_is_disjoint_complete_stratified_and_seeded():
    targets = [0] * 103 + [1] * 57 + [2] * 11
    train, val, test = stratified_split(targets, 0.1, 0.2, seed=7)
    assert sorted(train + val + test) == list(range(len(targets)))
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    for split, fraction in ((val, 0.1), (test, 0.2)):
        for label, n in ((0, 103), (1, 57), (2, 11)):
            assert abs(sum(targets[i] == label for i in split) - fraction * n) <= 1
    assert stratified_split(targets, 0.1, 0.2, seed=7) == (train, val, test)
    assert stratified_split(targets, 0.1, 0.2, seed=8) != (train, val, test)
    assert stratified_split(targets, 0.0, 0.0) == (list(range(len(targets))), [], [])


@pytest.mark.parametrize("fractions", [(-0.1, 0.1), (0.1, 1.0), (0.5, 0.5), (0.7, 0.4), (float("nan"), 0.1)])
def test_stratified_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fraction"):
        stratified_split([0, 1] * 20, *fractions)


def test_stratified_split_rejects_classes_too_small_to_split():
    with pytest.raises(ValueError, match="class 1 has only 2"):
        stratified_split([0] * 20 + [1] * 2, 0.1, 0.1)


def test_create_dataloaders_keeps_every_image_and_evaluates_deterministically(tmp_path):
    root = _image_folder(tmp_path / "ds", {"fake_images": 23, "real_images": 18}, size=(12, 12))
    train_tf, eval_tf = scratch_transforms(8)
    loaders = create_dataloaders(root, train_tf, eval_tf, batch_size=3, seed=1, num_workers=0)
    train_loader, val_loader, test_loader, class_names = loaders
    assert class_names == list(CLASS_NAMES)
    paths = [{p for p, _ in loader.dataset.samples} for loader in (train_loader, val_loader, test_loader)]
    assert sum(map(len, paths)) == 41 and len(set.union(*paths)) == 41
    assert sorted(val_loader.dataset.targets) == [0, 0, 1, 1] and sorted(test_loader.dataset.targets) == [
        0,
        0,
        1,
        1,
    ]
    for loader in (val_loader, test_loader):  # 4 images in batches of 3: the short last batch stays
        assert [len(labels) for _, labels in loader] == [3, 1]
    assert sum(len(labels) for _, labels in train_loader) == 33
    assert not val_loader.drop_last and not test_loader.drop_last
    first = torch.cat([images for images, _ in test_loader])
    second = torch.cat([images for images, _ in test_loader])
    assert torch.equal(first, second), "evaluation must not be random"

    def train_order(seed):
        loader = create_dataloaders(root, eval_tf, batch_size=64, seed=seed, num_workers=0)[0]
        return torch.cat([labels for _, labels in loader]).tolist()

    same, again = train_order(3), train_order(3)
    assert same == again and same != sorted(same), "train order: shuffled, and reproducible with the seed"


def test_create_dataloaders_worker_defaults(tmp_path):
    root = _image_folder(tmp_path / "ds", {"fake_images": 10, "real_images": 10}, size=(8, 8))
    _, eval_tf = scratch_transforms(8)
    assert data.default_num_workers() == min(2, os.cpu_count() or 0)
    train_loader, val_loader, _, _ = create_dataloaders(root, eval_tf, num_workers=1)
    assert train_loader.num_workers == 1 and train_loader.persistent_workers and val_loader.persistent_workers
    images, labels = next(iter(val_loader))  # a worker process really loads the images
    assert images.shape == (2, 3, 8, 8) and sorted(labels.tolist()) == [0, 1]
    loader = create_dataloaders(root, eval_tf, num_workers=0)[0]
    assert loader.num_workers == 0 and not loader.persistent_workers


# ------------------------------------------------------------------------------------------------
# transforms
# ------------------------------------------------------------------------------------------------


def test_pretrained_eval_transform_matches_torchvision_weights_transforms():
    from torchvision.models import ViT_B_16_Weights

    image = _random_rgb(np.random.default_rng(0), 300, 257)
    spec = eval_transform_spec(224, pretrained=True)
    assert spec["resize"] == 256 and spec["crop"] == 224
    assert json.loads(json.dumps(spec)) == spec  # checkpoints store it as JSON
    ours = build_eval_transform(spec)(image)
    reference = ViT_B_16_Weights.IMAGENET1K_V1.transforms()(image)
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    assert torch.equal(pretrained_transforms(224)[1](image), ours)
    assert eval_transform_spec(64, pretrained=True)["resize"] == 73
    assert eval_transform_spec(64, pretrained=False) == {
        "resize": 64,
        "crop": 64,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bilinear",
    }
    with pytest.raises(ValueError, match="missing"):
        build_eval_transform({"resize": 8})


def test_scratch_train_transform_moves_pixels_but_never_resamples_them():
    image = _random_rgb(np.random.default_rng(0), 32, 32)
    train_tf, eval_tf = scratch_transforms(32)
    original = eval_tf(image)  # (3, 32, 32), normalised
    values = {round(v, 4) for v in original.flatten().tolist()}
    torch.manual_seed(0)
    outputs = [train_tf(image) for _ in range(5)]
    assert all(o.shape == (3, 32, 32) for o in outputs)
    assert any(not torch.equal(o, original) for o in outputs), "augmentation changes the image"
    for output in outputs:  # every output value is an input value: shifted and flipped, not interpolated
        assert {round(v, 4) for v in output.flatten().tolist()} <= values
    assert torch.equal(eval_tf(image), original)
    same_train, same_eval = scratch_transforms(32, augment=False)
    assert torch.equal(same_train(image), original)
    big = _random_rgb(np.random.default_rng(1), 300, 240)
    train_tf, eval_tf = pretrained_transforms(64)
    assert train_tf(big).shape == (3, 64, 64) and eval_tf(big).shape == (3, 64, 64)


# ------------------------------------------------------------------------------------------------
# get_dataset, spectra and figures
# ------------------------------------------------------------------------------------------------


def test_get_dataset_makes_the_toy_set_once_and_knows_its_names(tmp_path, capsys):
    root = get_dataset("toy", root=tmp_path / "toy", images_per_class=3, image_size=16)
    assert "Made the toy dataset" in capsys.readouterr().out
    assert get_dataset("toy", root=tmp_path / "toy", images_per_class=3, image_size=16) == root
    assert capsys.readouterr().out == ""  # reused silently
    with pytest.raises(ValueError, match="'toy' and 'fake_or_real'"):
        get_dataset("cifar")


def test_get_dataset_fake_or_real_announces_the_size_first(tmp_path, fake_hub, capsys):
    folder = get_dataset("fake_or_real", root=tmp_path / "for", expected_count=6)
    announcement = capsys.readouterr().out
    assert "6,750 images" in announcement and "9 GB" in announcement
    assert folder == tmp_path / "for" / "train"


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


def test_figures_command_draws_samples_and_spectra(tmp_path):
    toy = make_toy_dataset(tmp_path / "toy", images_per_class=8, image_size=16)
    assert data.main(["figures", "--data", str(toy), "--out", str(tmp_path / "figs")]) == 0
    for name in ("toy_samples.png", "toy_spectra.png"):
        with Image.open(tmp_path / "figs" / name) as figure:
            assert figure.size[0] > 500
