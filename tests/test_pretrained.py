"""helpers.model.pretrained: torchvision's ViT-B/16 weights load offline from the hub cache; without them,
a clear error or a loudly announced random start."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from helpers.model import pretrained


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache, and a network that is down (the test never downloads)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, timeout):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(pretrained, "_check_reachable", offline)
    assert (
        pretrained.weights_cache_path()
        == tmp_path / "torch" / "hub" / "checkpoints" / "vit_b_16-c867db91.pth"
    )
    return pretrained.weights_cache_path()


def test_missing_weights_error_names_the_file_the_cache_folder_and_the_way_out(empty_hub):
    with pytest.raises(pretrained.PretrainedWeightsUnavailable) as info:
        pretrained.load_pretrained_vit_b16(num_classes=2)
    message = str(info.value)
    assert "vit_b_16-c867db91.pth" in message
    assert str(empty_hub.parent) in message  # the exact cache folder
    assert pretrained.VIT_B16_URL in message and "allow_random=True" in message


def test_allow_random_announces_random_weights_loudly_once(empty_hub, capsys, recwarn):
    model = pretrained.load_pretrained_vit_b16(num_classes=2, image_size=32, allow_random=True)
    announced = capsys.readouterr()
    assert announced.out.count("RANDOM WEIGHTS") == 1 and not announced.err
    # not a warning as well: a notebook would show it a second time, in red, with a temporary file's path
    assert not [w for w in recwarn if "RANDOM WEIGHTS" in str(w.message)]
    assert (model.config.dim, model.config.depth, model.config.num_classes) == (768, 12, 2)


@pytest.mark.slow
def test_weights_in_the_hub_cache_load_offline_and_match_torchvision(empty_hub):
    from torchvision.models import vit_b_16

    torch.manual_seed(0)
    reference = vit_b_16().eval()  # random weights stand in for the ImageNet ones
    empty_hub.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), empty_hub)

    model = pretrained.load_pretrained_vit_b16(num_classes=2).eval()  # offline: read from the cache
    reference.heads = torch.nn.Identity()  # torchvision's features before the head
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), reference(x), atol=1e-4, rtol=1e-4)
        assert torch.count_nonzero(model(x)) == 0  # a new zero-initialised 2-class head
    assert model.head.out_features == 2


# --------------------------------------------------------------------------------------------------
# Integrity: the sha256 prefix in the file name
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_checks(monkeypatch):
    """Forget which files were already checked in this process."""
    monkeypatch.setattr(pretrained, "_checked", {})


def test_a_file_whose_sha256_matches_its_name_passes_quietly(tmp_path, fresh_checks, capsys):
    payload = b"weights" * 1000
    probe = tmp_path / "probe.pth"
    probe.write_bytes(payload)
    named = tmp_path / f"vit_b_16-{pretrained.sha256_prefix(probe)}.pth"
    probe.rename(named)
    assert pretrained.check_published_weights(named) is True
    assert capsys.readouterr().out == ""


def test_other_weights_under_the_published_name_are_announced_once(empty_hub, fresh_checks, capsys):
    empty_hub.parent.mkdir(parents=True)
    empty_hub.write_bytes(b"not the published weights")
    assert pretrained.check_published_weights() is False  # the default: the cached ViT-B/16 file
    out = capsys.readouterr().out
    assert "NOT THE PUBLISHED WEIGHTS" in out and str(empty_hub) in out
    assert f"has sha256 {pretrained.sha256_prefix(empty_hub)}" in out and "c867db91" in out
    assert pretrained.check_published_weights() is False
    assert capsys.readouterr().out == "", "announced once per file"


def test_check_published_weights_needs_a_file_with_a_hash_in_its_name(empty_hub, tmp_path):
    with pytest.raises(FileNotFoundError, match="vit_b_16-c867db91.pth"):
        pretrained.check_published_weights()
    (tmp_path / "plain.pth").write_bytes(b"x")
    with pytest.raises(ValueError, match="plain.pth has no sha256 prefix"):
        pretrained.check_published_weights(tmp_path / "plain.pth")


def test_a_download_is_checked_against_the_hash_and_the_result_announced(
    empty_hub, fresh_checks, monkeypatch, capsys
):
    asked = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        asked.append((url, hash_prefix))
        torch.save({"w": torch.zeros(2)}, dst)  # a "download" that is not the published file

    monkeypatch.setattr(pretrained, "_check_reachable", lambda url, timeout: None)  # online
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    state_dict = pretrained.load_vit_b16_state_dict()
    assert asked == [(pretrained.VIT_B16_URL, "c867db91")], "torch.hub verifies what it downloads"
    assert list(state_dict) == ["w"]
    assert "NOT THE PUBLISHED WEIGHTS" in capsys.readouterr().out


def test_a_cached_file_that_runs_code_when_unpickled_is_refused_and_never_run(
    empty_hub, fresh_checks, plant_code_on_unpickle
):
    marker = plant_code_on_unpickle(empty_hub)  # under the published name, in the hub cache
    with pytest.raises(ValueError, match="is not plain tensors") as info:
        pretrained.load_pretrained_vit_b16(num_classes=2, image_size=32, allow_random=True)
    assert not marker.exists(), "loading the cached weights ran the code in them"
    message = str(info.value)
    assert str(empty_hub) in message and "nothing in it ran" in message and "delete it" in message
