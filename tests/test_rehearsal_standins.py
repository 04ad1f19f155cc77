"""The full-mode rehearsal's stand-ins (tools/rehearsal/): the local Hub, train.zip and the weights.

The stand-ins must exercise the real code: the local Hub must satisfy the installed huggingface_hub
client, the stand-in zip must look like the real train.zip, and the stand-in weights must load through
torchvision's weights API. These tests run that real code against them.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from PIL import Image, ImageOps

from helpers.data import datasets, fake_or_real
from helpers.model import pretrained

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from rehearsal import standins  # noqa: E402
from rehearsal.fake_hub import FakeHub  # noqa: E402

FAKES, PHOTOS = 3, 4  # photos 0-3 cover every size in PHOTO_SIZES and the EXIF-rotated one


def point_client_at(server: FakeHub, cache: Path, monkeypatch) -> None:
    """Point huggingface_hub at ``server`` and a fresh ``cache``, as HF_ENDPOINT and HF_HUB_CACHE would.

    The client reads those variables once, when it is imported, so its constants are patched here.
    """
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running FakeHub serving tmp_path/hub, with huggingface_hub pointed at it and at tmp_path/hf-cache."""
    (tmp_path / "hub").mkdir()
    with FakeHub(tmp_path / "hub") as server:
        point_client_at(server, tmp_path / "hf-cache", monkeypatch)
        yield server


@pytest.fixture(scope="module")
def standin_zip(tmp_path_factory) -> Path:
    return standins.write_standin_zip(
        tmp_path_factory.mktemp("zip") / "train.zip", fakes=FAKES, photos=PHOTOS
    )


# --------------------------------------------------------------------------------------------------
# The stand-in Hub
# --------------------------------------------------------------------------------------------------


def test_hf_hub_download_downloads_once_then_uses_its_cache(hub, tmp_path):
    payload = np.random.default_rng(0).bytes(300_000)
    (hub.root / "someone" / "things").mkdir(parents=True)
    (hub.root / "someone" / "things" / "file.bin").write_bytes(payload)

    first = hf_hub_download("someone/things", "file.bin", repo_type="dataset")
    assert Path(first).read_bytes() == payload
    assert Path(first).is_relative_to(tmp_path / "hf-cache")
    assert len(hub.downloads("file.bin")) == 1

    second = hf_hub_download("someone/things", "file.bin", repo_type="dataset")
    assert second == first
    assert len(hub.downloads("file.bin")) == 1  # the second call only asked for the metadata (HEAD)
    heads = [r for r in hub.requests if r.method == "HEAD" and r.path.endswith("/file.bin")]
    assert len(heads) == 2


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, monkeypatch):
    # huggingface_hub writes in 10 MiB chunks and resumes after the last whole chunk: break past it.
    payload = np.random.default_rng(1).bytes(12 << 20)
    (tmp_path / "hub" / "someone" / "big").mkdir(parents=True)
    (tmp_path / "hub" / "someone" / "big" / "big.bin").write_bytes(payload)
    with FakeHub(tmp_path / "hub", interrupt_first_download_after=11 << 20) as server:
        point_client_at(server, tmp_path / "hf-cache", monkeypatch)
        path = hf_hub_download("someone/big", "big.bin", repo_type="dataset")
    assert Path(path).read_bytes() == payload
    statuses = [(r.status, r.range, r.body_bytes) for r in server.downloads("big.bin")]
    assert statuses[0] == (200, None, 11 << 20)  # cut off
    assert statuses[-1][0] == 206 and statuses[-1][1].startswith("bytes=")  # resumed, not restarted
    assert sum(sent for _, _, sent in statuses[1:]) < len(payload)


def test_missing_repositories_and_files_raise_the_clients_errors(hub):
    (hub.root / "someone" / "things").mkdir(parents=True)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("someone/things", "missing.bin", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("someone/nothing", "file.bin", repo_type="dataset")
    assert hub.downloads() == []


# --------------------------------------------------------------------------------------------------
# The stand-in train.zip
# --------------------------------------------------------------------------------------------------


def test_standin_zip_has_the_real_layout_and_macos_junk(standin_zip):
    with zipfile.ZipFile(standin_zip) as archive:
        names = archive.namelist()
        fakes = [n for n in names if n.startswith("train/fake_images/") and n.endswith(".png")]
        photos = [n for n in names if n.startswith("train/real_images/") and n.endswith(".jpg")]
        junk = [n for n in names if n.startswith("__MACOSX/")]
        assert (len(fakes), len(photos)) == (FAKES, PHOTOS)
        assert {"train/", "train/fake_images/", "train/real_images/"} <= set(names)
        # One AppleDouble "._name" per image, beside it under __MACOSX/, with an image extension itself.
        expected = sorted(f"__MACOSX/{Path(n).parent}/._{Path(n).name}" for n in fakes + photos)
        assert sorted(junk) == expected
        assert all(archive.read(n).startswith(b"\x00\x05\x16\x07") for n in junk)  # AppleDouble magic
        assert set(names) == set(fakes + photos + junk) | {
            "train/",
            "train/fake_images/",
            "train/real_images/",
        }

        shown_sizes = set()
        for name in photos:
            with Image.open(io.BytesIO(archive.read(name))) as photo:
                assert photo.format == "JPEG"
                assert photo.width * photo.height >= 2_000_000, (name, photo.size)
                shown_sizes.add(ImageOps.exif_transpose(photo).size)
        assert {(2000, 1500), (1500, 2000)} <= shown_sizes  # landscape, and portrait (one only through EXIF)
        for name in fakes:
            with Image.open(io.BytesIO(archive.read(name))) as fake:
                assert (fake.format, fake.size, fake.mode) == ("PNG", (512, 512), "RGB")


@pytest.mark.slow
def test_standin_zip_bytes_depend_only_on_the_arguments(standin_zip, tmp_path):
    again = standins.write_standin_zip(tmp_path / "train.zip", fakes=FAKES, photos=PHOTOS)
    assert again.read_bytes() == standin_zip.read_bytes()
    in_parallel = standins.write_standin_zip(tmp_path / "parallel.zip", fakes=FAKES, photos=PHOTOS, workers=2)
    assert in_parallel.read_bytes() == standin_zip.read_bytes()
    other_seed = standins.write_standin_zip(tmp_path / "other.zip", fakes=1, photos=1, seed=1)
    with zipfile.ZipFile(standin_zip) as a, zipfile.ZipFile(other_seed) as b:
        assert a.read("train/fake_images/fake_0000.png") != b.read("train/fake_images/fake_0000.png")


def test_download_fake_or_real_fetches_and_extracts_the_standin_from_the_hub(hub, standin_zip, tmp_path):
    served = hub.root / fake_or_real.REPO_ID / fake_or_real.ZIP_FILE
    served.parent.mkdir(parents=True)
    served.write_bytes(standin_zip.read_bytes())

    folder = fake_or_real.download_fake_or_real(tmp_path / "fake_or_real", expected_count=FAKES + PHOTOS)
    samples, class_names = datasets.find_images(folder)
    assert class_names == list(datasets.CLASS_NAMES)
    assert np.bincount([label for _, label in samples]).tolist() == [FAKES, PHOTOS]
    assert not list(folder.rglob("._*")) and not (tmp_path / "fake_or_real" / "__MACOSX").exists()
    assert len(hub.downloads(fake_or_real.ZIP_FILE)) == 1

    again = fake_or_real.download_fake_or_real(tmp_path / "fake_or_real", expected_count=FAKES + PHOTOS)
    assert again == folder
    assert len(hub.downloads(fake_or_real.ZIP_FILE)) == 1  # prepared once: no second download


# --------------------------------------------------------------------------------------------------
# The stand-in ViT-B/16 weights
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_standin_weights_load_through_torchvisions_cache_and_are_announced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = standins.write_standin_vit_b16_weights(tmp_path / "torch")
    assert path == pretrained.weights_cache_path()  # the name and folder torchvision looks in
    assert pretrained.sha256_prefix(path) != standins.PUBLISHED_PREFIX == "c867db91"

    model = pretrained.load_pretrained_vit_b16(num_classes=None, image_size=32, timeout=0.1)
    assert "NOT THE PUBLISHED WEIGHTS" in capsys.readouterr().out
    saved = torch.load(path, weights_only=True)
    assert saved["heads.head.weight"].std() > 0.01  # a head that tells the 1000 classes apart
    torch.testing.assert_close(model.head.weight, saved["heads.head.weight"])
    torch.testing.assert_close(
        model.blocks[0].attn.to_qkv.weight,
        saved["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"],
    )


def test_standin_cnn_weights_load_through_torchvisions_weights_api(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = standins.write_standin_cnn_weights(tmp_path / "torch", "resnet18")
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / Path(weights.url).name
    model = torchvision.models.get_model("resnet18", weights=weights)  # read from the cache, no download
    torch.testing.assert_close(model.fc.weight, torch.load(path, weights_only=True)["fc.weight"])
    assert not pretrained.check_published_weights(path)  # random weights under the published name
    assert "NOT THE PUBLISHED WEIGHTS" in capsys.readouterr().out
