"""A config.json or model.safetensors from elsewhere is checked field by field before it is trusted
(issue 13): every bad value is a clear error naming the file and the value, never a traceback deep
in torch, a huge allocation, or a demo that answers NaN."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers.model.limits import MAX_PARAMETERS
from helpers.model.vit import PRESETS, ViT, ViTConfig, count_parameters, get_config
from helpers.serving.inference import DetectorError, check_transform_spec, load_predictor

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# ViTConfig
# ---------------------------------------------------------------------------------------------


# One bad value per rule: the field, the value and the start of the message that names them.
BAD_FIELDS = [
    ("patch_size", 0, r"ViTConfig\.patch_size=0 must be from 1 to"),
    ("heads", 0, r"ViTConfig\.heads=0 must be from 1 to"),
    ("dim", -8, r"ViTConfig\.dim=-8 must be from 1 to"),
    ("depth", 0, r"ViTConfig\.depth=0 must be from 1 to"),
    ("image_size", 20000, r"ViTConfig\.image_size=20000 must be from 1 to 4,096"),
    ("num_classes", 10**9, r"ViTConfig\.num_classes=1000000000 must be from 1 to 100,000"),
    ("mlp_dim", 10**6, r"ViTConfig\.mlp_dim=1000000 must be from 1 to 32,768"),
    ("in_channels", 0, r"ViTConfig\.in_channels=0"),
    ("image_size", 224.0, r"ViTConfig\.image_size=224\.0 must be a whole number, not float"),
    ("depth", True, r"ViTConfig\.depth=True must be a whole number, not bool"),
    ("dim", "768", r"ViTConfig\.dim='768' must be a whole number, not str"),
    ("dropout", 1.0, r"ViTConfig\.dropout=1\.0 must be a number from 0 up to"),
    ("attention_dropout", -0.1, r"ViTConfig\.attention_dropout=-0\.1"),
    ("dropout", math.nan, r"ViTConfig\.dropout=nan"),
    ("patch_size", 17, r"image_size=224 is not a multiple of patch_size=17"),
    ("heads", 7, r"dim=768 must be divisible by heads=7"),
    ("patch_size", 1, r"50,176 patches, above the limit of 16,384"),
]


@pytest.mark.parametrize("field, value, message", BAD_FIELDS)
def test_every_field_is_checked_naming_it(field, value, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**{field: value})


def test_absurd_sizes_are_refused_before_anything_is_allocated():
    with pytest.raises(ValueError, match=r"103\.1 B parameters, above the limit of 1 B"):
        ViTConfig(dim=8192, heads=8, mlp_dim=32768, depth=128)
    assert PRESETS["vit_b16"].num_parameters == 86_567_656  # the paper's ViT-B/16
    vit_h14 = ViTConfig(image_size=224, patch_size=14, dim=1280, depth=32, heads=16, mlp_dim=5120)
    assert 0.6e9 < vit_h14.num_parameters < MAX_PARAMETERS  # torchvision's largest ViT still fits
    with pytest.raises(ValueError, match=r"1\.8 B parameters"):  # ViT-G/14: never in this course
        ViTConfig(image_size=224, patch_size=14, dim=1664, depth=48, heads=16, mlp_dim=8192)


@pytest.mark.parametrize(
    "config",
    [
        PRESETS["vit_b16"],
        PRESETS["vit_tiny"],
        get_config("vit_tiny", image_size=32, depth=1, num_classes=5),
        ViTConfig(
            image_size=48, patch_size=4, in_channels=1, num_classes=3, dim=20, depth=3, heads=4, mlp_dim=7
        ),
    ],
)
def test_num_parameters_matches_the_model(config):
    with torch.device("meta"):
        assert config.num_parameters == count_parameters(ViT(config))


def test_whole_numbers_of_other_types_become_ints():
    config = ViTConfig(image_size=np.int64(64), patch_size=np.int32(8), dim=64, heads=2)  # e.g. from numpy
    assert type(config.image_size) is int and type(config.patch_size) is int
    assert json.loads(json.dumps(config.to_dict()))["image_size"] == 64


# ---------------------------------------------------------------------------------------------
# The transform spec
# ---------------------------------------------------------------------------------------------

GOOD_SPEC = {"resize": 32, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mean": [0.5, 0.5]}, r"mean=\[0\.5, 0\.5\] must be 3 finite numbers"),
        ({"std": [0.2, math.nan, 0.2]}, r"std=.* must be 3 finite numbers"),
        ({"std": [0.2, 0.0, 0.2]}, r"std=.*every value must be above 0"),
        ({"mean": "0.5"}, r"mean='0\.5' must be 3 finite numbers"),
        ({"resize": 10**6}, r"resize=1000000 must be from 1 to 4096"),
        ({"resize": 1e6}, r"resize=1000000\.0 must be a whole number"),
        ({"crop": 0}, r"crop=0 must be from 1"),
        ({"crop": 64, "resize": 64}, r"crop=64 but the model takes 32x32 images"),
        ({"resize": 16}, r"crop=32 is larger than resize=16"),
        ({"resize": None}, r"resize=None must be a whole number"),
    ],
)
def test_every_transform_field_is_checked_naming_it(change, message):
    check_transform_spec(GOOD_SPEC, image_size=32)  # the unchanged spec is fine
    with pytest.raises(ValueError, match=message):
        check_transform_spec({**GOOD_SPEC, **change}, image_size=32)


# ---------------------------------------------------------------------------------------------
# load_predictor on tampered detector folders
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector(tmp_path_factory, tiny_detector) -> Path:
    """A 1-block vit_tiny at 32 px with random weights."""
    return tiny_detector(tmp_path_factory.mktemp("detector"), seed=0)[1]


def tampered(detector: Path, folder: Path, config_changes=None, weights=None) -> Path:
    """A copy of ``detector`` in ``folder`` with ``config_changes(config)`` applied and/or other weights."""
    folder.mkdir()
    config = json.loads((detector / "config.json").read_text())
    if config_changes:
        config_changes(config)
    (folder / "config.json").write_text(json.dumps(config))
    if weights is None:
        (folder / "model.safetensors").write_bytes((detector / "model.safetensors").read_bytes())
    else:
        save_file(weights, folder / "model.safetensors")
    return folder


def test_the_untouched_detector_loads(detector):
    assert load_predictor(detector).model.config == get_config("vit_tiny", image_size=32, depth=1)


# The same checks, met in a detector's config.json (the whole-number rules), and one of the detector's own.
IN_CONFIG_JSON = [case for case in BAD_FIELDS if "must be from 1" in case[2]]
IN_CONFIG_JSON += [("in_channels", 1, r"in_channels=1, but images are loaded as RGB")]


@pytest.mark.parametrize("field, value, message", IN_CONFIG_JSON)
def test_a_bad_vit_config_field_names_the_file_and_the_field(detector, tmp_path, field, value, message):
    folder = tampered(detector, tmp_path / "tampered", lambda c: c["vit_config"].update({field: value}))
    with pytest.raises(DetectorError, match=message) as error:
        load_predictor(folder)
    assert str(folder / "config.json") in str(error.value) and "export the detector again" in str(error.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mean": [0.5, 0.5]}, r"mean=\[0\.5, 0\.5\] must be 3 finite numbers"),
        ({"resize": 10**6}, r"resize=1000000 must be from 1 to 4096"),
        ({"std": [0, 1, 1]}, r"every value must be above 0"),
        ({"crop": 64, "resize": 64}, r"crop=64 but the model takes 32x32"),
    ],
)
def test_a_bad_transform_names_the_file_and_the_field(detector, tmp_path, change, message):
    folder = tampered(detector, tmp_path / "tampered", lambda c: c["transform"].update(change))
    with pytest.raises(DetectorError, match=message) as error:
        load_predictor(folder)
    assert str(folder / "config.json") in str(error.value)


def test_class_names_must_be_strings(detector, tmp_path):
    folder = tampered(detector, tmp_path / "tampered", lambda c: c.update(class_names=[0, 1]))
    with pytest.raises(DetectorError, match=r"class_names=\[0, 1\] must all be non-empty strings"):
        load_predictor(folder)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_infinite_weights_are_refused_naming_the_tensor(detector, tmp_path, value):
    weights = load_file(detector / "model.safetensors")
    weights["blocks.0.mlp.fc1.weight"][3, :2] = value
    folder = tampered(detector, tmp_path / "tampered", weights=weights)
    with pytest.raises(
        DetectorError, match=r"'blocks\.0\.mlp\.fc1\.weight' holds 2 NaN or infinite"
    ) as error:
        load_predictor(folder)
    assert str(folder / "model.safetensors") in str(error.value)


def header_error(detector: Path, folder: Path, **kwargs) -> str:
    with pytest.raises(DetectorError) as error:
        load_predictor(tampered(detector, folder, **kwargs))
    return str(error.value)


def test_the_weights_header_is_compared_with_the_config(detector, tmp_path):
    weights = load_file(detector / "model.safetensors")
    wider = header_error(detector, tmp_path / "a", config_changes=lambda c: c["vit_config"].update(dim=96))
    assert str(tmp_path / "a" / "model.safetensors") in wider and "does not fit the model" in wider
    assert "'patch_embedding.class_token' is (1, 1, 192), the config needs (1, 1, 96)" in wider
    assert "and " in wider and "more" in wider  # every tensor differs: the first 5 are listed
    deeper = header_error(detector, tmp_path / "b", config_changes=lambda c: c["vit_config"].update(depth=2))
    assert "missing 'blocks.1.norm1.weight'" in deeper
    extra = header_error(detector, tmp_path / "c", weights={**weights, "spy": torch.zeros(1)})
    assert "unexpected 'spy'" in extra
    ints = header_error(
        detector, tmp_path / "d", weights={**weights, "head.bias": torch.zeros(2, dtype=torch.int64)}
    )
    assert "'head.bias' holds I64, not floats" in ints


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_weights_file_names_the_file(detector, tmp_path, damage):
    folder = tampered(detector, tmp_path / "tampered")
    data = (detector / "model.safetensors").read_bytes()
    damaged = {"garbage": b"\xff" * 64, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    (folder / "model.safetensors").write_bytes(damaged)
    with pytest.raises(DetectorError, match="is not a readable safetensors file") as error:
        load_predictor(folder)
    assert str(folder / "model.safetensors") in str(error.value)


LOAD_AND_MEASURE = """
import resource, sys
from helpers.serving.inference import DetectorError, load_predictor
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # peak memory after the imports, MB
try:
    load_predictor(sys.argv[1])
    print("loaded")
except DetectorError as err:
    print("refused:", err)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # peak memory, MB
"""


@pytest.mark.slow
def test_a_config_for_a_huge_model_is_refused_before_allocating_it(detector, tmp_path):
    """config.json says ViT with 0.9 B parameters (3.6 GB, allowed), model.safetensors holds the tiny one."""
    huge = {"image_size": 224, "patch_size": 16, "dim": 2048, "depth": 18, "heads": 16, "mlp_dim": 8192}
    assert ViTConfig(**{**get_config("vit_tiny").to_dict(), **huge}).num_parameters > 0.9e9

    def describe_a_huge_model(config):
        config["vit_config"].update(huge)
        config["transform"].update(resize=224, crop=224)

    folder = tampered(detector, tmp_path / "tampered", describe_a_huge_model)
    run = subprocess.run(
        [sys.executable, "-c", LOAD_AND_MEASURE, str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    imported_mb, message, peak_mb = run.stdout.strip().splitlines()
    assert "refused:" in message and "does not fit the model" in message
    grew = int(peak_mb) - int(imported_mb)
    assert grew < 500, f"peak memory grew by {grew} MB while loading: the 3.6 GB model was allocated"
