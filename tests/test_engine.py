"""helpers.engine and helpers.pretrained: metrics, schedule, fit, checkpoints and resume, linear probe,
loading torchvision's ViT-B/16 weights offline."""

from __future__ import annotations

import copy
import json
import math
import urllib.error

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset

from helpers import engine, pretrained
from helpers.vit import ViT, get_config

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------------------------------------
# Small synthetic problem: 32x32 images whose class shows in the mean of the red channel
# ---------------------------------------------------------------------------------------------


def synthetic_images(n: int, seed: int, image_size: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2  # (n,) balanced
    images = torch.randn(n, 3, image_size, image_size, generator=g)  # (n, 3, H, W)
    images[:, 0] += (labels.float() * 2 - 1).view(n, 1, 1) * 0.8  # class 1 redder, class 0 less red
    return TensorDataset(images, labels)


def tiny_vit(seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    return ViT(get_config("vit_tiny", image_size=32, depth=2, dim=64, heads=2, mlp_dim=128))


def loaders(batch_size: int = 16, generator: bool = True):
    train = DataLoader(
        synthetic_images(64, seed=1),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator() if generator else None,
    )
    val = DataLoader(synthetic_images(32, seed=2), batch_size=32)
    test = DataLoader(synthetic_images(32, seed=3), batch_size=32)
    return train, val, test


FIT = dict(
    lr=3e-3,
    device="cpu",
    weight_decay=0.05,
    warmup_epochs=1,
    label_smoothing=0.1,
    grad_clip=1.0,
    seed=7,
    progress=False,
)
TIMING_KEYS = ("seconds", "train_images_per_second")


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


# ---------------------------------------------------------------------------------------------
# Metrics against counts done by hand
# ---------------------------------------------------------------------------------------------


def binary_probs(p_fake: list[float]) -> torch.Tensor:
    p = torch.tensor(p_fake)
    return torch.stack([p, 1 - p], dim=1)  # (N, 2): column 0 = fake, column 1 = real


# 8 images: 4 fake (label 0), then 4 real (label 1); probability of "fake" for each.
TARGETS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
P_FAKE = [0.9, 0.8, 0.4, 0.6, 0.7, 0.55, 0.1, 0.3]
# Predicted fake (p > 0.5): images 0, 1, 3 (fake) and 4, 5 (real).
# Positive class = fake: TP = 3 (0, 1, 3), FN = 1 (2), FP = 2 (4, 5), TN = 2 (6, 7).
# AUROC = P(score of a fake > score of a real) over the 4 x 4 pairs:
#   0.9 beats 4, 0.8 beats 4, 0.4 beats 2 (0.1, 0.3), 0.6 beats 3 (0.55, 0.1, 0.3) -> 13 / 16.


def test_binary_metrics_match_hand_counts_with_fake_as_positive():
    m = engine.compute_metrics(binary_probs(P_FAKE), TARGETS)  # positive_class defaults to 0 = fake
    tp, fn, fp, tn = 3, 1, 2, 2
    assert m["accuracy"] == pytest.approx((tp + tn) / 8)
    assert m["precision"] == pytest.approx(tp / (tp + fp))  # 0.6
    assert m["recall"] == pytest.approx(tp / (tp + fn))  # 0.75
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert m["auroc"] == pytest.approx(13 / 16)
    # rows = true class, columns = predicted class, in class-index order
    assert m["confusion_matrix"] == [[tp, fn], [fp, tn]]
    assert m["num_samples"] == 8 and m["positive_class"] == 0
    for key in ("accuracy", "precision", "recall", "f1", "auroc"):
        assert type(m[key]) is float and 0.0 <= m[key] <= 1.0
    json.dumps(m)  # plain Python values only


def test_binary_metrics_with_real_as_positive():
    m = engine.compute_metrics(binary_probs(P_FAKE), TARGETS, positive_class=1)
    # Predicted real: images 2, 6, 7; of those 6 and 7 are real. Real images: 4, 5, 6, 7.
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    # the same 16 pairs: a real image outranks a fake on P(real) exactly when the fake outranks it on P(fake)
    assert m["auroc"] == pytest.approx(13 / 16)
    assert m["confusion_matrix"] == [[3, 1], [2, 2]]  # does not depend on the positive class


def test_multiclass_metrics_are_macro_averages():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    probs = torch.nn.functional.one_hot(preds, 3).float() * 0.8 + 0.2 / 3  # rows sum to 1
    m = engine.compute_metrics(probs, targets)
    # per class: precision 1/2, 2/3, 1/1; recall 1/2, 2/2, 1/2
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_auroc_is_none_when_only_one_class_is_present():
    m = engine.compute_metrics(binary_probs([0.9, 0.2]), torch.tensor([0, 0]))
    assert m["auroc"] is None and m["accuracy"] == 0.5


# ---------------------------------------------------------------------------------------------
# Schedule and parameter groups
# ---------------------------------------------------------------------------------------------


def test_warmup_cosine_schedule_values():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = engine.warmup_cosine_schedule(optimizer, warmup_steps=2, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])  # linear warm-up, then the top of the cosine
    assert lrs[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))  # half way down: 0.5
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))  # never rises after warm-up
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # 0 after the last step


def test_weight_decay_groups_exempt_biases_norms_and_embeddings():
    model = tiny_vit()
    model.blocks[1].requires_grad_(False)
    decay, no_decay = engine.weight_decay_groups(model.named_parameters(), 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    assert {
        "patch_embedding.class_token",
        "patch_embedding.pos_embedding",
        "norm.weight",
        "head.bias",
        "blocks.0.attn.to_qkv.bias",
    } <= no_decay_names
    assert {"patch_embedding.proj.weight", "blocks.0.attn.to_qkv.weight", "head.weight"} <= decay_names
    assert not any(n.startswith("blocks.1.") for n in decay_names | no_decay_names)  # frozen: left out


# ---------------------------------------------------------------------------------------------
# fit: learns, keeps the best weights, is repeatable, resumes exactly
# ---------------------------------------------------------------------------------------------


def test_fit_learns_restores_best_weights_and_is_repeatable():
    train, val, test = loaders()
    model = tiny_vit()
    result = engine.fit(model, train, val, test_loader=test, epochs=4, **FIT)
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert all(type(v) in (int, float) for h in history for v in h.values())
    assert result["test"]["accuracy"] >= 0.9  # the red channel gives the class away
    best = history[result["best_epoch"] - 1]
    assert best["val_accuracy"] == max(h["val_accuracy"] for h in history)
    # the model ends with the best epoch's weights: its validation numbers are that epoch's
    assert result["val"]["accuracy"] == best["val_accuracy"]
    assert result["val"]["loss"] == pytest.approx(best["val_loss"], abs=1e-6)

    train, val, test = loaders()
    again = engine.fit(tiny_vit(), train, val, test_loader=test, epochs=4, **FIT)
    assert without_timings(again["history"]) == without_timings(history)
    assert again["test"] == result["test"]


class KilledAfter:
    """A train loader that dies (like Ctrl-C or a lost Colab session) after ``batches`` batches."""

    def __init__(self, loader: DataLoader, batches: int):
        self.loader, self.batches = loader, batches
        self.generator, self.batch_size = loader.generator, loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.batches == 0:
                raise KeyboardInterrupt
            self.batches -= 1
            yield batch


@pytest.mark.parametrize("generator", [True, False], ids=["loader-generator", "global-rng"])
def test_resume_after_a_kill_mid_epoch_gives_exactly_the_uninterrupted_run(tmp_path, generator):
    train, val, test = loaders(generator=generator)
    straight_model = tiny_vit()
    straight = engine.fit(straight_model, train, val, test_loader=test, epochs=4, **FIT)

    # Killed in the middle of epoch 3 (4 batches per epoch): epochs 1-2 are checkpointed.
    train, val, test = loaders(generator=generator)
    with pytest.raises(KeyboardInterrupt):
        engine.fit(
            tiny_vit(),
            KilledAfter(train, batches=2 * 4 + 2),
            val,
            test_loader=test,
            epochs=4,
            out_dir=tmp_path,
            **FIT,
        )
    folder = tmp_path / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.safetensors",
        "model.safetensors",
        "state.pt",
        "trainer.json",
    ]  # no temporary files left
    assert json.loads((folder / "trainer.json").read_text())["epoch"] == 2
    # Nothing is unpickled: the optimizer state loads with weights_only=True, weights are safetensors.
    state = torch.load(folder / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["optimizer"]["state"]
    assert load_file(folder / "model.safetensors").keys() == straight_model.state_dict().keys()

    # Resume into a model with other initial weights: they are replaced by the checkpoint's.
    train, val, test = loaders(generator=generator)
    resumed_model = tiny_vit(seed=123)
    resumed = engine.fit(
        resumed_model, train, val, test_loader=test, epochs=4, out_dir=tmp_path, resume=True, **FIT
    )
    assert without_timings(resumed["history"]) == without_timings(straight["history"])
    assert resumed["best_epoch"] == straight["best_epoch"]
    assert resumed["val"] == straight["val"] and resumed["test"] == straight["test"]
    for key, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
    assert json.loads((folder / "trainer.json").read_text())["epoch"] == 4


def test_resume_with_other_settings_is_refused(tmp_path):
    train, val, _ = loaders()
    engine.fit(tiny_vit(), train, val, epochs=1, out_dir=tmp_path, **FIT)
    with pytest.raises(ValueError, match=r"lr: saved 0.003, now 0.001"):
        engine.fit(tiny_vit(), train, val, epochs=1, out_dir=tmp_path, resume=True, **{**FIT, "lr": 1e-3})


# ---------------------------------------------------------------------------------------------
# Linear probe on cached features == training the head with a full forward pass every epoch
# ---------------------------------------------------------------------------------------------


def test_cached_feature_probe_trains_the_same_head_as_full_forward_passes():
    train, val, test = loaders()
    backbone = tiny_vit()
    full_model, probe_model = copy.deepcopy(backbone), copy.deepcopy(backbone)
    settings = dict(epochs=3, lr=1e-2, device="cpu", weight_decay=0.01, seed=3, progress=False)

    full_model.requires_grad_(False)
    full_model.head.requires_grad_(True)  # the tutorial's way: frozen backbone run on every batch
    full = engine.fit(full_model, train, val, test_loader=test, **settings)

    train, val, test = loaders()
    probe = engine.fit_linear_probe(probe_model, train, val, test_loader=test, **settings)

    torch.testing.assert_close(probe_model.head.weight, full_model.head.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probe_model.head.bias, full_model.head.bias, atol=1e-5, rtol=1e-4)
    assert probe["test"]["accuracy"] == full["test"]["accuracy"]
    assert [h["val_accuracy"] for h in probe["history"]] == [h["val_accuracy"] for h in full["history"]]
    assert probe_model.head.weight.abs().sum() > 0  # the head did learn (it starts at zero)
    for key, value in backbone.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(probe_model.state_dict()[key], value), f"{key} changed in a linear probe"


# ---------------------------------------------------------------------------------------------
# helpers.pretrained: offline loading from the hub cache, clear failure, loud random fallback
# ---------------------------------------------------------------------------------------------


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


def test_allow_random_announces_random_weights_loudly(empty_hub, capsys):
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        model = pretrained.load_pretrained_vit_b16(num_classes=2, image_size=32, allow_random=True)
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
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


def test_modes_freeze_and_group_parameters():
    model = tiny_vit()
    pretrained.prepare_for_mode(model, "linear_probe")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    pretrained.prepare_for_mode(model, "finetune")
    assert all(p.requires_grad for p in model.parameters())
    groups = pretrained.finetune_param_groups(model, lr=1e-3, weight_decay=0.05, backbone_lr_scale=0.1)
    head_ids = {id(model.head.weight), id(model.head.bias)}
    for group in groups:
        in_head = {id(p) in head_ids for p in group["params"]}
        assert len(in_head) == 1  # a group is all head or all backbone
        assert group["lr"] == pytest.approx(1e-3 if in_head == {True} else 1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
