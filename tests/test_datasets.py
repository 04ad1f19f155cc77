"""helpers.data.datasets, .index and .loaders: indexing a folder, the decode check, the Dataset, stratified
splits, smaller splits, DataLoaders."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data import index, loaders
from helpers.data.cache import build_image_cache
from helpers.data.datasets import (
    CLASS_NAMES,
    ImageFolderDataset,
    find_images,
    first_per_class,
    stratified_split,
)
from helpers.data.loaders import create_dataloaders, make_loader
from helpers.data.transforms import scratch_transforms


def test_find_images_skips_undecodable_files_with_one_warning(
    tmp_path, monkeypatch, image_folder, random_rgb
):
    root = image_folder(tmp_path / "ds", {"fake_images": 3, "real_images": 2})
    (root / "real_images" / "nested").mkdir()
    random_rgb(np.random.default_rng(5), 8, 8).save(root / "real_images" / "nested" / "deep.JPG")
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
        find_images(image_folder(tmp_path / "clean", {"fake_images": 1, "real_images": 1}))


@pytest.mark.parametrize("case", ["missing", "empty", "single_class", "only_bad_files"])
def test_find_images_rejects_folders_without_two_classes(tmp_path, case, image_folder):
    root = tmp_path / case
    if case == "empty":
        root.mkdir()
    elif case == "single_class":
        image_folder(root, {"real_images": 2})
        (root / "fake_images").mkdir()
    elif case == "only_bad_files":
        image_folder(root, {"real_images": 2})
        (root / "fake_images").mkdir()
        (root / "fake_images" / "broken.png").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError) as error:
            find_images(root)
    assert str(root) in str(error.value) and "root/fake_images/*.png" in str(error.value)


def test_image_folder_dataset_returns_tensors_and_targets(tmp_path, image_folder):
    root = image_folder(tmp_path / "ds", {"fake_images": 2, "real_images": 3}, size=(20, 16))
    samples, _ = find_images(root)
    _, eval_tf = scratch_transforms(8)
    dataset = ImageFolderDataset(samples, eval_tf)
    assert len(dataset) == 5 and dataset.targets == [0, 0, 1, 1, 1]
    assert not hasattr(dataset, "cached"), "the plain dataset decodes every file: no cache logic"
    image, label = dataset[4]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32 and label == 1
    assert isinstance(ImageFolderDataset(samples)[0][0], Image.Image)


def test_stratified_split_is_disjoint_complete_stratified_and_seeded():
    targets = [0] * 103 + [1] * 57 + [2] * 11
    train, val, test = stratified_split(targets, 0.1, 0.2, seed=7)
    assert sorted(train + val + test) == list(range(len(targets)))
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    for split, fraction in ((val, 0.1), (test, 0.2)):
        for label, n in ((0, 103), (1, 57), (2, 11)):
            assert sum(targets[i] == label for i in split) == round(n * fraction)  # as the docstring says
    # 57 * 0.1 = 5.7 and 11 * 0.2 = 2.2: rounding, not truncating (int() would give 5), nor rounding up
    assert (sum(targets[i] == 1 for i in val), sum(targets[i] == 2 for i in test)) == (6, 2)
    assert stratified_split(targets, 0.1, 0.2, seed=7) == (train, val, test)
    assert stratified_split(targets, 0.1, 0.2, seed=8) != (train, val, test)
    assert stratified_split(targets, 0.0, 0.0) == (list(range(len(targets))), [], [])


def test_stratified_split_gives_a_small_class_at_least_one_image_per_split():
    targets = [0] * 40 + [1] * 4  # 4 * 0.1 = 0.4 rounds to 0, yet val and test each get one
    train, val, test = stratified_split(targets, 0.1, 0.1, seed=0)
    for split, expected in ((train, 2), (val, 1), (test, 1)):
        assert sum(targets[i] == 1 for i in split) == expected


def test_stratified_split_defaults_to_10_percent_each_and_seed_42():
    targets = [0] * 30 + [1] * 20
    assert stratified_split(targets) == stratified_split(targets, 0.1, 0.1, seed=42)


@pytest.mark.parametrize(
    "fractions, message",
    [
        ((-0.1, 0.1), r"val_fraction must be in \[0, 1\), got -0.1"),
        ((float("nan"), 0.1), r"val_fraction must be in \[0, 1\), got nan"),
        ((0.1, 1.0), r"test_fraction must be in \[0, 1\), got 1.0"),
        ((0.5, 0.5), r"val_fraction \+ test_fraction must be below 1 .* = 1.0$"),
        ((0.7, 0.4), r"val_fraction \+ test_fraction must be below 1 .* = 1.1$"),
    ],
)
def test_stratified_split_rejects_bad_fractions_naming_them(fractions, message):
    with pytest.raises(ValueError, match=message):
        stratified_split([0, 1] * 20, *fractions)


def test_stratified_split_needs_one_training_image_per_class_and_no_more():
    with pytest.raises(ValueError, match="class 1 has only 2"):
        stratified_split([0] * 20 + [1] * 2, 0.1, 0.1)
    targets = [0] * 20 + [1] * 3  # one image each for val and test, one left to train on: enough
    train, val, test = stratified_split(targets, 0.1, 0.1)
    assert [sum(targets[i] == 1 for i in split) for split in (train, val, test)] == [1, 1, 1]


def test_create_dataloaders_keeps_every_image_and_evaluates_deterministically(tmp_path, image_folder):
    root = image_folder(tmp_path / "ds", {"fake_images": 23, "real_images": 18}, size=(12, 12))
    train_tf, eval_tf = scratch_transforms(8)
    loaders = create_dataloaders(root, train_tf, eval_tf, batch_size=3, seed=1, num_workers=0)
    train_loader, val_loader, test_loader, class_names = loaders
    assert class_names == list(CLASS_NAMES)
    paths = [{p for p, _ in loader.dataset.samples} for loader in (train_loader, val_loader, test_loader)]
    assert sum(map(len, paths)) == 41 and len(set.union(*paths)) == 41
    assert sorted(val_loader.dataset.targets) == [0, 0, 1, 1]
    assert sorted(test_loader.dataset.targets) == [0, 0, 1, 1]
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


def test_default_num_workers_follows_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(3)), raising=False)
    assert loaders.default_num_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert loaders.default_num_workers() == loaders.MAX_DEFAULT_WORKERS == 8
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert loaders.default_num_workers() == 4
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert loaders.default_num_workers() == 0


def test_create_dataloaders_workers_and_pinned_memory(tmp_path, image_folder, monkeypatch):
    root = image_folder(tmp_path / "ds", {"fake_images": 10, "real_images": 10}, size=(8, 8))
    _, eval_tf = scratch_transforms(8)
    train_loader, val_loader, test_loader, _ = create_dataloaders(root, eval_tf, num_workers=1)
    assert train_loader.num_workers == test_loader.num_workers == 1
    assert train_loader.persistent_workers and val_loader.persistent_workers, "used every epoch"
    assert not test_loader.persistent_workers, "used once: its workers end with it"
    images, labels = next(iter(val_loader))  # a worker process really loads the images
    assert images.shape == (2, 3, 8, 8) and sorted(labels.tolist()) == [0, 1]
    loader = create_dataloaders(root, eval_tf, num_workers=0)[0]
    assert loader.num_workers == 0 and not loader.persistent_workers
    assert not any(loader.pin_memory for loader in create_dataloaders(root, eval_tf, num_workers=0)[:3])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    assert all(loader.pin_memory for loader in create_dataloaders(root, eval_tf, num_workers=0)[:3])
    unpinned = create_dataloaders(root, eval_tf, num_workers=0, pin_memory=False)[:3]
    assert not any(loader.pin_memory for loader in unpinned)


def test_make_loader_rules(monkeypatch):
    dataset = torch.utils.data.TensorDataset(torch.arange(20))

    def order(loader):
        return torch.cat([batch for (batch,) in loader]).tolist()

    shuffled = make_loader(dataset, batch_size=4, shuffle=True, seed=3, num_workers=0)
    assert order(shuffled) == order(make_loader(dataset, batch_size=4, shuffle=True, seed=3, num_workers=0))
    assert order(shuffled) != list(range(20)), "shuffled, and the same order for the same seed"
    shuffled.generator.manual_seed(3)  # what training does at the start of every epoch
    assert order(shuffled) == order(make_loader(dataset, batch_size=4, shuffle=True, seed=3, num_workers=0))
    torch.manual_seed(0)
    unseeded = order(make_loader(dataset, batch_size=4, shuffle=True, num_workers=0))
    torch.manual_seed(0)
    assert order(make_loader(dataset, batch_size=4, shuffle=True, num_workers=0)) == unseeded, "global seed"
    in_order = make_loader(dataset, batch_size=3, num_workers=0)
    assert order(in_order) == list(range(20)) and in_order.generator is None and not in_order.drop_last

    # DDP: the sampler shards and shuffles, the generator still seeds the workers
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=5)
    sharded = make_loader(dataset, batch_size=4, shuffle=True, seed=5, sampler=sampler, num_workers=0)
    assert sharded.sampler is sampler and sharded.generator is not None
    assert sorted(order(sharded)) == sorted(list(sampler)) and len(order(sharded)) == 10

    monkeypatch.setattr(loaders, "default_num_workers", lambda: 2)
    every_epoch = make_loader(dataset, batch_size=4)
    assert every_epoch.num_workers == 2 and every_epoch.persistent_workers
    assert not make_loader(dataset, batch_size=4, persistent_workers=False).persistent_workers
    assert not make_loader(dataset, batch_size=4, num_workers=0, persistent_workers=True).persistent_workers

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not make_loader(dataset, batch_size=4, num_workers=0).pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert make_loader(dataset, batch_size=4, num_workers=0).pin_memory
    assert not make_loader(dataset, batch_size=4, num_workers=0, pin_memory=False).pin_memory


def test_find_images_skips_undecodable_files_and_decodes_only_what_the_cache_lacks(
    tmp_path, image_folder, monkeypatch, random_rgb
):
    root = image_folder(tmp_path / "ds", {"fake_images": 3, "real_images": 3})
    (root / "real_images" / "broken.png").write_bytes(b"nope")
    decoded = []
    real_check = index._decode_problem
    monkeypatch.setattr(index, "_decode_problem", lambda path: decoded.append(path.name) or real_check(path))
    with pytest.warns(UserWarning, match="broken.png"):
        first, _ = find_images(root)
    assert len(decoded) == 7 and len(first) == 6
    with pytest.warns(UserWarning, match="broken.png"):
        build_image_cache(root, 16)
    decoded.clear()
    with pytest.warns(UserWarning, match="broken.png"):  # still skipped; the cached images not decoded again
        assert find_images(root)[0] == first
    assert decoded == ["broken.png"]


def test_a_vanished_file_is_skipped_like_an_undecodable_one(tmp_path, image_folder, monkeypatch):
    root = image_folder(tmp_path / "ds", {"fake_images": 3, "real_images": 3})
    os.symlink(root / "fake_images" / "deleted.png", root / "fake_images" / "link.png")  # dangling link
    with pytest.warns(UserWarning, match=r"(?s)Skipped 1 .*link.png: vanished"):
        samples, _ = find_images(root)
    assert len(samples) == 6

    real_load = index.load_image_rgb
    between_listing_and_decoding = root / "fake_images" / "002.png"

    def load(path, **kwargs):
        if path == between_listing_and_decoding:
            path.unlink()
        return real_load(path, **kwargs)

    monkeypatch.setattr(index, "load_image_rgb", load)
    with pytest.warns(UserWarning, match=r"(?s)Skipped 2 .*002.png: vanished"):
        samples, _ = find_images(root)
    assert len(samples) == 5


def test_first_per_class_keeps_the_first_of_each_label_in_order():
    samples = [("a", 1), ("b", 0), ("c", 1), ("d", 1), ("e", 0), ("f", 0), ("g", 2)]
    assert first_per_class(samples, 2) == [("a", 1), ("b", 0), ("c", 1), ("e", 0), ("g", 2)]
    assert first_per_class(samples, 1) == [("a", 1), ("b", 0), ("g", 2)]
    assert first_per_class(samples, 0) == samples  # 0 = all of them
    assert first_per_class([], 3) == []
