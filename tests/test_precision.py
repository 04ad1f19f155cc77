"""Precision chosen by the machine (issues 11 and 15): helpers.train.precision.resolve_precision for
training and inference, TF32, and the predictor's auto precision agreeing with fp32 on the toy test split."""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest
import torch

from helpers.data import transforms
from helpers.data.loaders import create_dataloaders
from helpers.data.toy import make_toy_dataset
from helpers.model.vit import ViT, get_config
from helpers.serving.inference import load_predictor, save_detector
from helpers.train import cli as train
from helpers.train import loop, run
from helpers.train.precision import allow_tf32, native_bf16, resolve_precision
from helpers.train.recipes import get_recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------------------------------------
# resolve_precision: every machine, faked
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def cpu_with(monkeypatch):
    """``cpu_with(**capabilities)``: make torch.cpu.get_capabilities() report these flags."""

    def fake(**flags):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: MappingProxyType(flags))

    return fake


@pytest.fixture
def gpu_with(monkeypatch):
    """``gpu_with(native_bf16)``: a CUDA GPU that does (A100) or does not (T4) multiply bf16 natively."""

    def fake(native: bool):
        def is_bf16_supported(including_emulation: bool = True) -> bool:
            return native or including_emulation

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        monkeypatch.setattr(
            torch.cuda, "get_device_name", lambda device=None: "A100" if native else "Tesla T4"
        )

    return fake


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": False}, True),  # Zen 4, Cooper Lake
        ({"architecture": "x86_64", "avx512_bf16": False, "amx_bf16": True}, True),  # Sapphire Rapids
        ({"architecture": "aarch64", "bf16": True}, True),  # Graviton 3
        ({"architecture": "x86_64", "avx512_bf16": False, "amx_bf16": False, "avx2": True}, False),
        ({"architecture": "x86_64"}, False),
    ],
)
def test_native_bf16_on_a_cpu_follows_torchs_capabilities(cpu_with, flags, native):
    cpu_with(**flags)
    assert native_bf16("cpu") is native
    assert resolve_precision("auto", "cpu", inference=True) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", "cpu") == "fp32"  # training on a CPU stays in fp32


def test_auto_on_gpus_bf16_where_native_else_fp16(gpu_with):
    gpu_with(native=True)
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", "cuda", inference=True) == "bf16"
    gpu_with(native=False)  # a T4: bf16 only emulated
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(ValueError, match="Tesla T4 has no bf16 units.*use 'fp16'"):
        resolve_precision("bf16", "cuda")


def test_explicit_precisions_are_checked(cpu_with):
    cpu_with(architecture="x86_64")
    assert [resolve_precision(p, "cpu") for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    with pytest.raises(ValueError, match="fp16.*needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="must be one of"):
        resolve_precision("half", "cpu")


def test_tf32_is_left_alone_on_a_cpu():
    before = torch.get_float32_matmul_precision()
    assert allow_tf32("cpu") is False
    assert torch.get_float32_matmul_precision() == before


def test_the_cli_resolves_auto_before_training(easy_folder, cpu_with):
    cpu_with(architecture="x86_64", avx512_bf16=True)  # even with native bf16, a CPU trains in fp32
    args = train.parse_args(["--data", str(easy_folder), "--device", "cpu"])
    assert args.precision == "fp32"
    args = train.parse_args(["--data", str(easy_folder), "--device", "cpu", "--precision", "bf16"])
    assert args.precision == "bf16"


def test_fit_takes_auto(synthetic_loaders, tiny_vit, tmp_path):
    train_loader, val_loader, _ = synthetic_loaders()
    recipe = get_recipe("scratch", epochs=1)
    run.resumable_fit(
        tiny_vit(), train_loader, val_loader, recipe, device="cpu", precision="auto", out_dir=tmp_path
    )
    saved = json.loads((tmp_path / "training_state" / "trainer.json").read_text())
    assert saved["settings"]["precision"] == "fp32"  # what ran, not "auto"


# ---------------------------------------------------------------------------------------------
# The predictor: auto (bf16 where the CPU has it) against fp32 on the toy test split
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A 2-block ViT trained for 10 epochs (2 s) on a 32-px toy set, exported as a detector, and
    the toy test split's image files."""
    root = tmp_path_factory.mktemp("toy")
    toy = make_toy_dataset(root / "toy", images_per_class=100, image_size=32)
    train_tf, eval_tf = transforms.scratch_transforms(32)
    train_loader, val_loader, test_loader, classes = create_dataloaders(toy, train_tf, eval_tf, num_workers=0)
    torch.manual_seed(0)
    model = ViT(get_config("vit_tiny", image_size=32, depth=2, dim=64, heads=2, mlp_dim=128, num_classes=2))
    recipe = get_recipe("scratch", epochs=10, lr=3e-3, warmup_epochs=1)
    loop.fit(model, train_loader, val_loader, recipe, device="cpu", progress=False)
    detector = save_detector(
        model, root / "detector", classes, transforms.eval_transform_spec(32, pretrained=False), "vit_tiny"
    )
    return detector, test_loader.dataset.samples


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_auto_and_bf16_give_the_labels_of_fp32_and_probabilities_within_0_02(toy_run, precision):
    """bf16 runs on any CPU (emulated where it is not native), so the agreement is checked everywhere."""
    detector, samples = toy_run
    test_images, labels = [path for path, _ in samples], torch.tensor([label for _, label in samples])
    exact = load_predictor(detector, precision="fp32").predict_batch(test_images)  # (N, 2)
    fast = load_predictor(detector, precision=precision)
    if precision == "auto":
        assert fast.precision == ("bf16" if native_bf16("cpu") else "fp32")
    got = fast.predict_batch(test_images)
    assert len(test_images) == 20
    if fast.precision == "bf16":
        assert not torch.equal(got, exact)  # bf16 really ran: its rounding shows
    assert torch.equal(got.argmax(dim=1), exact.argmax(dim=1))
    assert (got - exact).abs().max().item() < 0.02
    assert (exact.argmax(dim=1) == labels).float().mean() >= 0.75  # it learned: probabilities far from 0.5
