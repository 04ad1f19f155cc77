"""helpers.data.cache: decoded once, read (CachedImageFolder) as the same pixels the decoded path gives."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from PIL import Image
from torchvision import transforms as T1
from torchvision.transforms import v2 as T

from helpers.data import sources as data
from helpers.data.cache import (
    CACHE_FOLDER,
    PIXELS_FILE,
    CachedImageFolder,
    ImageCache,
    build_image_cache,
    folder_dataset,
)
from helpers.data.datasets import CLASS_NAMES, ImageFolderDataset, find_images
from helpers.data.loaders import create_dataloaders, make_loader
from helpers.data.transforms import IMAGENET_STD, normalise_batch, pretrained_transforms, scratch_transforms
from helpers.train import loop


@pytest.fixture
def mixed_folder(tmp_path, textured_rgb):
    """Photos of several shapes: 24 x 32, 40 x 30 and a square 20 px one, in both classes."""
    root = tmp_path / "mixed"
    shapes = [(24, 32), (40, 30), (20, 20), (33, 47)]
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            Image.fromarray(textured_rgb(h, w, seed=10 * label + i)).save(root / name / f"{i}.png")
    return root


def _pair(samples, transform):
    """The same samples read twice: decoded from the files (v1-style callable), and from the cache."""
    decoded = CachedImageFolder(samples, lambda image: transform(image))  # a plain function: never cached
    cached = CachedImageFolder(samples, transform)
    assert decoded.cached == 0 and cached.cached == len(samples)
    assert type(folder_dataset(samples, decoded.transform)) is ImageFolderDataset, "nothing cached: plain"
    assert isinstance(folder_dataset(samples, transform), CachedImageFolder)
    return decoded, cached


@pytest.mark.parametrize(
    ("size", "make_transforms"),
    [(20, lambda: scratch_transforms(20)), (21, lambda: pretrained_transforms(18))],  # 18 * 256 / 224 -> 21
    ids=["scratch", "pretrained"],
)
def test_cached_pixels_equal_the_decoded_path_for_eval_and_train_transforms(
    mixed_folder, size, make_transforms
):
    # The cache stores Resize(size) of each file, made by the PIL resize the transforms call first;
    # on the cached tensor that Resize has nothing left to do, so every later step sees the same pixels.
    build_image_cache(mixed_folder, size)
    samples, _ = find_images(mixed_folder)
    for transform in make_transforms():  # (train, eval)
        decoded, cached = _pair(samples, transform)
        for i in range(len(samples)):
            torch.manual_seed(i)  # the same random crop and flip for both
            expected = decoded[i][0]
            torch.manual_seed(i)
            image = cached[i][0]  # uint8: the training step normalises it
            assert image.dtype == torch.uint8 and type(image) is torch.Tensor
            assert torch.equal(normalise_batch(image), expected), f"sample {i}: must be the decoded pixels"


def test_another_resize_is_within_one_level_when_the_files_are_at_the_cache_size(tmp_path, textured_rgb):
    # A prepared copy: shorter sides at the cache's size, so the cached pixels are the files'. A
    # transform resizing to another size then resizes the uint8 tensor (torchvision) instead of the
    # PIL image: torchvision's uint8 antialiased bilinear resize follows Pillow's, only rounding
    # differs, so the two are at most 1/255 apart.
    root = tmp_path / "prepared"
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate([(20, 20), (20, 27), (31, 20)]):
            Image.fromarray(textured_rgb(h, w, seed=10 * label + i)).save(root / name / f"{i}.png")
    build_image_cache(root, 20)
    samples, _ = find_images(root)
    decoded, cached = _pair(samples, scratch_transforms(12)[1])
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    differences = [
        ((decoded[i][0] - normalise_batch(cached[i][0])) * std * 255).abs().max().item()
        for i in range(len(samples))
    ]
    assert max(differences) <= 1 + 1e-3, differences  # in pixel levels


def test_a_file_that_would_be_resized_twice_is_decoded(mixed_folder):
    build_image_cache(mixed_folder, 20)  # files of other sizes, and a transform resizing to 12, not 20
    samples, _ = find_images(mixed_folder)
    dataset = CachedImageFolder(samples, scratch_transforms(12)[1])
    square = [i for i, (path, _) in enumerate(samples) if Image.open(path).size == (20, 20)]
    assert dataset.cached == len(square) == 2 and all(dataset.cache_rows[i] is not None for i in square)


def test_the_toy_set_is_cached_and_read_through_create_dataloaders(tmp_path):
    toy = data.get_dataset("toy", root=tmp_path / "toy", images_per_class=6, image_size=16)
    build_image_cache(toy, 16)
    train_tf, eval_tf = scratch_transforms(16)
    loaders = create_dataloaders(toy, train_tf, eval_tf, batch_size=4, num_workers=0, dataset=folder_dataset)
    assert all(loader.dataset.cached == len(loader.dataset) for loader in loaders[:3])
    assert type(create_dataloaders(toy, eval_tf, num_workers=0)[0].dataset) is ImageFolderDataset, "plain"
    images, labels = next(iter(loaders[2]))
    files = [eval_tf(Image.open(path).convert("RGB")) for path, _ in loaders[2].dataset.samples[:4]]
    assert images.dtype == torch.uint8 and torch.equal(normalise_batch(images), torch.stack(files))


def test_dataloader_workers_read_the_cache(mixed_folder):
    build_image_cache(mixed_folder, 20)
    samples, _ = find_images(mixed_folder)
    dataset = folder_dataset(samples, scratch_transforms(20)[1])
    in_process = torch.cat([x for x, _ in make_loader(dataset, batch_size=3, num_workers=0)])
    in_worker = torch.cat([x for x, _ in make_loader(dataset, batch_size=3, num_workers=1)])
    assert torch.equal(in_process, in_worker) and dataset.cache._pixels is not None
    assert "_pixels" not in {k for k, v in dataset.cache.__getstate__().items() if v is not None}


def test_a_changed_file_is_decoded_again_and_a_v1_transform_decodes(mixed_folder, textured_rgb):
    build_image_cache(mixed_folder, 20)
    changed = mixed_folder / "real_images" / "1.png"
    Image.fromarray(textured_rgb(30, 40, seed=99)).save(changed)  # same shape, other pixels
    samples, _ = find_images(mixed_folder)
    _, eval_tf = scratch_transforms(20)
    dataset = folder_dataset(samples, eval_tf)
    index = [p for p, _ in samples].index(changed)
    assert dataset.cached == len(samples) - 1 and dataset.cache_rows[index] is None
    decoded = eval_tf(Image.open(changed).convert("RGB"))
    assert dataset[index][0].dtype == torch.uint8, "decoded rows too: one dtype per batch"
    assert torch.equal(normalise_batch(dataset[index][0]), decoded)
    v1 = T1.Compose([T1.Resize(20), T1.CenterCrop(20), T1.ToTensor()])  # PIL only: gets PIL images
    assert CachedImageFolder(samples, v1).cached == 0 and CachedImageFolder(samples, v1)[0][0].shape == (
        3,
        20,
        20,
    )
    assert type(folder_dataset(samples, v1)) is ImageFolderDataset
    assert CachedImageFolder(samples).cached == 0, "no transform: the decoded PIL image, as before"
    assert type(folder_dataset(samples)) is ImageFolderDataset


def test_build_skips_bad_and_vanished_files_and_is_reused_until_a_file_changes(mixed_folder, textured_rgb):
    (mixed_folder / "fake_images" / "broken.png").write_bytes(b"\x89PNG truncated")
    os.symlink(mixed_folder / "nowhere.png", mixed_folder / "fake_images" / "gone.png")
    with pytest.warns(UserWarning, match="Skipped 2 undecodable") as caught:
        folder = build_image_cache(mixed_folder, 20)
    message = str(next(w for w in caught if "Skipped" in str(w.message)).message)
    assert "broken.png" in message and "gone.png" in message and "vanished" in message
    assert folder == mixed_folder / CACHE_FOLDER
    cache = ImageCache.open(mixed_folder)
    assert len(cache.rows) == 8 and cache.size == 20
    stamp = (folder / PIXELS_FILE).stat().st_mtime_ns
    (mixed_folder / "fake_images" / "broken.png").unlink()
    (mixed_folder / "fake_images" / "gone.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_image_cache(mixed_folder, 20)
        assert (folder / PIXELS_FILE).stat().st_mtime_ns == stamp, "nothing changed: reused"
        Image.fromarray(textured_rgb(10, 10, seed=5)).save(mixed_folder / "real_images" / "new.png")
        build_image_cache(mixed_folder, 20)
    assert (folder / PIXELS_FILE).stat().st_mtime_ns != stamp and len(ImageCache.open(mixed_folder).rows) == 9
    sizes = {tuple(ImageCache.open(mixed_folder).table[:, 2:4].min(axis=1).tolist())}
    assert sizes == {tuple([20] * 9)}, "every cached image has its shorter side at 20 px"


def test_cache_command_line(mixed_folder, capsys):
    assert data.main(["cache", "--data", str(mixed_folder), "--size", "16"]) == 0
    assert "image cache at 16 px ready" in capsys.readouterr().out
    assert ImageCache.open(mixed_folder).size == 16
    with pytest.raises(SystemExit) as exit_info:  # a usage error, before any work
        data.main(["cache", "--data", str(mixed_folder / "missing")])
    assert exit_info.value.code == 2 and "missing: no such folder" in capsys.readouterr().err


def test_cache_is_read_without_decoding(mixed_folder, monkeypatch):
    build_image_cache(mixed_folder, 20)
    samples, _ = find_images(mixed_folder)
    dataset = folder_dataset(samples, scratch_transforms(20)[1])

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached image must not be decoded")

    monkeypatch.setattr("helpers.data.datasets.load_image_rgb", no_decoding)
    assert all(dataset[i][0].shape == (3, 20, 20) for i in range(len(dataset)))
    assert torch.stack([dataset[i][0] for i in range(len(dataset))]).dtype == torch.uint8


@pytest.mark.usefixtures("one_thread")  # see conftest.py
def test_the_uint8_feed_trains_as_the_float_feed_and_other_transforms_stay_float(mixed_folder, tiny_vit):
    # The cached path hands out uint8 (cropped, flipped in the worker); train_one_epoch and evaluate
    # normalise it on the device. At fp32 the same images in the same order train to the same weights.
    build_image_cache(mixed_folder, 16)
    samples, _ = find_images(mixed_folder)
    train_tf, eval_tf = scratch_transforms(16)  # flips and reflect-padded shifts
    weights, metrics = [], []
    for kind in (ImageFolderDataset, folder_dataset):  # decoded floats, then cached uint8
        loader = make_loader(kind(samples, train_tf), batch_size=3, shuffle=True, seed=0, num_workers=0)
        model = tiny_vit(seed=0, image_size=16)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        loop.set_seed(0)  # the same crops and flips
        for _ in range(2):
            loop.train_one_epoch(
                model, loader, optimizer=optimizer, loss_fn=torch.nn.CrossEntropyLoss(), device="cpu",
                progress=False,
            )  # fmt: skip
        weights.append(model.state_dict())
        metrics.append(
            loop.evaluate(
                model,
                make_loader(kind(samples, eval_tf), batch_size=4, num_workers=0),
                device="cpu",
            )
        )
    assert next(iter(loader))[0].dtype == torch.uint8
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)
    assert metrics[0] == metrics[1]
    tutorial = T.Compose([T.Resize(16), T.CenterCrop(16), T.ToImage(), T.ToDtype(torch.float32, scale=True)])
    assert folder_dataset(samples, tutorial)[0][0].dtype == torch.float32, "no ImageNet normalisation: floats"
