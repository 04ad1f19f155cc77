"""The web demo (helpers/serving/demo.py, app/app.py): every kind of upload, bad uploads, the CLI's errors,
and the real server (helpers.serving.demo_server) answering gradio_client on a loopback port."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data.images import ImageLoadError
from helpers.data.toy import make_toy_dataset
from helpers.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from helpers.serving import demo
from helpers.serving.demo_server import running_demo
from helpers.serving.inference import load_predictor

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

# ---------------------------------------------------------------------------------------------
# A tiny detector and one file of every kind a user might upload
# ---------------------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that *says* it is width x height (8-bit grey) but holds no pixels: a decompression bomb's
    header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory, tiny_detector) -> Path:
    """A 1-block ViT at 32 px with random weights and a random head (a zero head says 50/50 to everything)."""
    return tiny_detector(tmp_path_factory.mktemp("detector"), seed=0)[1]


@pytest.fixture(scope="module")
def predictor(detector):
    return load_predictor(detector)


UPLOAD_KINDS = [
    "rgba.png",
    "grey.png",
    "palette.png",
    "cmyk.jpg",
    "sixteen_bit.png",
    "one_pixel.png",
    "large.jpg",
    "animated.gif",
]


@pytest.fixture(scope="module")
def uploads(tmp_path_factory, textured_rgb) -> dict[str, Path]:
    """One file per kind of upload that must give a prediction."""
    folder = tmp_path_factory.mktemp("uploads")
    rgb = Image.fromarray(textured_rgb(48, 40, seed=1))
    files = {}

    def save(name: str, image: Image.Image, **kwargs) -> None:
        files[name] = folder / name
        image.save(files[name], **kwargs)

    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    save("rgba.png", rgba)
    save("grey.png", rgb.convert("L"))
    save("palette.png", rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), transparency=0)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=90)
    save("sixteen_bit.png", Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257))
    save("one_pixel.png", Image.new("RGB", (1, 1), (200, 30, 60)))
    save(
        "large.jpg", Image.fromarray(textured_rgb(300, 400, seed=2)).resize((4000, 3000)), quality=85
    )  # 12 M pixels
    frames = [Image.fromarray(textured_rgb(40, 40, seed=s)) for s in (3, 4, 5)]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    return files


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory, textured_rgb) -> dict[str, Path]:
    """Files that must be refused with a message naming them."""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "notes.txt").write_text("This is a shopping list, not a picture.\n")
    png = folder / "whole.png"
    Image.fromarray(textured_rgb(32, 32, seed=6)).save(png)
    (folder / "truncated.png").write_bytes(png.read_bytes()[:100])  # a valid header, then nothing
    limit = Image.MAX_IMAGE_PIXELS
    side_warn = int((1.5 * limit) ** 0.5)  # PIL itself only warns between 1x and 2x the limit
    side_error = int((2.5 * limit) ** 0.5)  # PIL itself refuses above 2x the limit
    return {
        "notes.txt": folder / "notes.txt",
        "truncated.png": folder / "truncated.png",
        "bomb_1.5x.png": png_header_only(folder / "bomb_1.5x.png", side_warn, side_warn),
        "bomb_2.5x.png": png_header_only(folder / "bomb_2.5x.png", side_error, side_error),
    }


def test_the_upload_files_are_the_kinds_they_claim(uploads):
    modes = {name: Image.open(path).mode for name, path in uploads.items()}
    assert modes == {
        "rgba.png": "RGBA",
        "grey.png": "L",
        "palette.png": "P",
        "cmyk.jpg": "CMYK",
        "sixteen_bit.png": "I;16",
        "one_pixel.png": "RGB",
        "large.jpg": "RGB",
        "animated.gif": "P",
    }
    assert Image.open(uploads["animated.gif"]).n_frames == 3


# ---------------------------------------------------------------------------------------------
# classify(): the function behind the page, in-process
# ---------------------------------------------------------------------------------------------


def assert_is_prediction(probs: dict[str, float]) -> None:
    assert list(probs) == ["fake", "real"]
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_display_names():
    assert [demo.display_name(c) for c in ("fake_images", "real_images", "ai_art")] == [
        "fake",
        "real",
        "ai art",
    ]


@pytest.mark.parametrize("name", UPLOAD_KINDS)
def test_every_kind_of_upload_gets_a_prediction(predictor, uploads, name):
    assert_is_prediction(demo.classify(predictor, uploads[name]))


def test_prediction_applies_the_eval_transform_recorded_in_the_detector(detector, tmp_path, textured_rgb):
    """At 32 px the recorded transform is: to [0, 1], normalise with ImageNet statistics. Redo it by hand."""
    predictor = load_predictor(detector, precision="fp32")  # the exact numbers, compared to 1e-5
    pixels = textured_rgb(32, 32, seed=7)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    spec = json.loads((detector / "config.json").read_text())["transform"]
    assert (spec["resize"], spec["crop"], spec["mean"], spec["std"]) == (
        32,
        32,
        list(IMAGENET_MEAN),
        list(IMAGENET_STD),
    )

    x = (pixels / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)  # (H, W, 3)
    x = torch.tensor(x, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W)
    with torch.no_grad():
        expected = predictor.model(x).softmax(dim=-1)[0]  # (2,)
    got = demo.classify(predictor, tmp_path / "x.png")
    assert [got["fake"], got["real"]] == pytest.approx(expected.tolist(), abs=1e-5)


def test_animated_gif_is_classified_by_its_first_frame(predictor, uploads, tmp_path):
    frames = []
    with Image.open(uploads["animated.gif"]) as gif:
        for index in (0, 2):
            gif.seek(index)
            frames.append(tmp_path / f"frame{index}.png")
            gif.convert("RGB").save(frames[-1])
    got = demo.classify(predictor, uploads["animated.gif"])
    first, last = (demo.classify(predictor, frame) for frame in frames)
    assert got == pytest.approx(first, abs=1e-6)
    assert abs(first["fake"] - last["fake"]) > 1e-4  # the frames differ, so this test could tell them apart


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "name, reason",
    [
        ("notes.txt", "cannot identify image file"),
        ("truncated.png", "cannot be decoded"),
        ("bomb_1.5x.png", "above the limit of 25 M pixels"),  # the demo's own cap, MAX_UPLOAD_PIXELS
        ("bomb_2.5x.png", "decompression-bomb"),  # PIL refuses to open it at all
    ],
)
def test_bad_uploads_are_refused_with_a_message_naming_the_file(predictor, bad_uploads, name, reason):
    with pytest.raises(ImageLoadError, match=reason) as error:
        demo.classify(predictor, bad_uploads[name])
    assert repr(name) in str(error.value)


def test_no_image_yet(predictor):
    with pytest.raises(ImageLoadError, match="No image yet"):
        demo.classify(predictor, None)


# ---------------------------------------------------------------------------------------------
# build_demo(): the Gradio page, in-process
# ---------------------------------------------------------------------------------------------


def predict_endpoint(page):
    """The function registered as the page's /predict endpoint."""
    [function] = [fn for fn in page.fns.values() if fn.api_name == "predict"]
    assert function.preprocess is False  # so classify(), not Gradio, opens the upload
    return function.fn


def test_build_demo_registers_predict(detector, predictor, uploads, bad_uploads, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # Gradio's upload folder: /predict reads only there
    page = demo.build_demo(detector)
    assert isinstance(page, gr.Blocks)
    predict = predict_endpoint(page)
    # What Gradio passes with preprocess=False: its file record, with the name the user gave the file.
    upload = {
        "path": shutil.copy(uploads["rgba.png"], tmp_path),
        "orig_name": "holiday.png",
        "meta": {"_type": "gradio.FileData"},
    }
    assert predict(upload) == pytest.approx(demo.classify(predictor, uploads["rgba.png"]))
    with pytest.raises(gr.Error, match="'my notes.txt' is not an image"):
        predict({"path": shutil.copy(bad_uploads["notes.txt"], tmp_path), "orig_name": "my notes.txt"})
    with pytest.raises(gr.Error, match="No image yet"):
        predict(None)


def test_the_upload_folder_is_where_gradio_stores_uploads(tmp_path, monkeypatch):
    # The documented default and $GRADIO_TEMP_DIR, checked against where this gradio's components store
    # files (GRADIO_CACHE, an attribute of every component), so a gradio that moves it fails here.
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    assert demo.gradio_upload_folder() == Path(gr.Image().GRADIO_CACHE).resolve()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    assert demo.gradio_upload_folder() == Path(gr.Image().GRADIO_CACHE).resolve() == tmp_path.resolve()


def test_the_filter_for_gradios_unawaited_coroutine_matches_its_message_only():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message=demo.GRADIO_UNAWAITED_USER, category=RuntimeWarning)
        warnings.warn(
            "coroutine 'App.create_app.<locals>.get_current_user' was never awaited",
            RuntimeWarning,
            stacklevel=1,
        )
        warnings.warn("coroutine 'something_else' was never awaited", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["coroutine 'something_else' was never awaited"]


def test_examples_come_from_data_toy_or_are_generated(tmp_path, predictor):
    generated = demo.find_examples(tmp_path / "no_data", cache=tmp_path / "cache", per_class=2)
    assert [p.parent.name for p in generated] == ["fake_images"] * 2 + ["real_images"] * 2
    assert all(p.is_relative_to(tmp_path / "cache") for p in generated)
    for path in generated:
        assert_is_prediction(demo.classify(predictor, path))

    make_toy_dataset(tmp_path / "data" / "toy", images_per_class=3)
    found = demo.find_examples(tmp_path / "data", cache=tmp_path / "unused", per_class=2)
    assert [p.parent.name for p in found] == ["fake_images"] * 2 + ["real_images"] * 2
    assert all(p.is_relative_to(tmp_path / "data" / "toy") for p in found)
    assert not (tmp_path / "unused").exists()


@pytest.mark.slow
def test_the_page_says_which_precision_runs(detector, monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    for precision in ("fp32", "bf16"):
        page = demo.build_demo(detector, precision=precision)
        [summary] = [
            b.value for b in page.blocks.values() if isinstance(b, gr.Markdown) and "Model:" in b.value
        ]
        assert f"**Precision:** {demo.PRECISION_NOTES[precision]}." in summary
    auto = load_predictor(detector).precision  # what the page runs by default
    assert f"**Precision:** {demo.PRECISION_NOTES[auto]}" in demo.model_summary(load_predictor(detector))


def test_the_page_shows_the_threshold_and_the_false_positive_rate_it_was_chosen_for(detector, tmp_path):
    assert "**Decision:** fake when P(fake) > 0.5 (the default" in demo.model_summary(
        load_predictor(detector)
    )
    chosen = tmp_path / "chosen"
    shutil.copytree(detector, chosen)
    config = json.loads((chosen / "config.json").read_text())
    (chosen / "config.json").write_text(json.dumps({**config, "threshold": 0.62, "target_fpr": 0.05}))
    summary = demo.model_summary(load_predictor(chosen))
    assert "**Decision:** fake when P(fake) > 0.620, chosen on validation images for 5% of real" in summary
    page = demo.build_demo(chosen)
    labels = [b.label for b in page.blocks.values() if isinstance(b, gr.Label)]
    assert labels == ["Prediction (fake when P(fake) > 0.620)"]


@pytest.mark.slow
def test_launch_demo_serves_with_the_upload_cap_and_returns_the_page_to_close(
    detector, monkeypatch, tmp_path
):
    """What lesson 06 calls: the server runs in the background, caps uploads, and stops on close()."""
    from helpers.serving.demo_server import free_port

    httpx = pytest.importorskip("httpx")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    port = free_port()
    page = demo.launch_demo(detector, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        too_big = httpx.post(
            url, files={"files": ("big.png", b"\0" * (demo.MAX_UPLOAD_BYTES + 1))}, timeout=60
        )
        assert too_big.status_code == 413
        assert httpx.post(url, files={"files": ("small.png", b"\0" * 100)}, timeout=60).status_code == 200
    finally:
        page.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)


# ---------------------------------------------------------------------------------------------
# The command line: a missing or broken detector stops the app at start
# ---------------------------------------------------------------------------------------------


def run_main(argv, capsys) -> tuple[int, str]:
    """``(exit status, stderr)`` of the app's command line; stderr must be one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return exit_info.value.code, err


def test_missing_detector_folder_exits_2_saying_how_to_make_one(tmp_path, capsys):
    code, err = run_main(["--detector", str(tmp_path / "nothing_here")], capsys)
    assert code == 2
    assert str(tmp_path / "nothing_here") in err
    assert "make run" in err and "python -m helpers.train --data data/toy" in err


def test_default_detector_is_build_detector(tmp_path, capsys, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.fakevit]\n")  # a course checkout without a detector
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(demo.DETECTOR_ENV, raising=False)
    code, err = run_main(["--no-examples"], capsys)
    assert code == 2
    assert str(tmp_path / "build" / "detector") in err


def test_detector_without_config_names_the_file(tmp_path, detector, capsys):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((detector / "model.safetensors").read_bytes())
    code, err = run_main(["--detector", str(folder), "--no-examples"], capsys)
    assert code == 2
    assert str(folder / "config.json") in err


def test_mismatched_detector_names_the_file(tmp_path, detector, capsys):
    """config.json describes a 2-block ViT, model.safetensors holds a 1-block one."""
    folder = tmp_path / "mismatched"
    folder.mkdir()
    config = json.loads((detector / "config.json").read_text())
    config["vit_config"]["depth"] = 2
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((detector / "model.safetensors").read_bytes())
    code, err = run_main(["--detector", str(folder), "--no-examples"], capsys)
    assert code == 2
    assert str(folder / "model.safetensors") in err and "does not fit" in err


# ---------------------------------------------------------------------------------------------
# The real thing: `python app/app.py` in a subprocess, called through gradio_client
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(detector, tmp_path_factory):
    try:
        with running_demo(detector, tmp_path_factory.mktemp("server")) as url:
            yield url
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def client(server_url):
    return gradio_client.Client(server_url, verbose=False)


def assert_label_output(result: dict, expected: dict[str, float]) -> None:
    """gr.Label's output: {"label": top class, "confidences": [{"label", "confidence"}, ...]}."""
    confidences = {c["label"]: c["confidence"] for c in result["confidences"]}
    assert confidences == pytest.approx(expected, abs=1e-5)
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-5)
    assert result["label"] == max(confidences, key=confidences.get)


@pytest.mark.slow
@pytest.mark.parametrize("name", UPLOAD_KINDS)
def test_server_predicts_every_kind_of_upload(client, predictor, uploads, name):
    result = client.predict(gradio_client.handle_file(str(uploads[name])), api_name="/predict")
    assert_label_output(result, demo.classify(predictor, uploads[name]))


@pytest.mark.slow
def test_server_refuses_a_non_image_and_keeps_serving(client, predictor, uploads, bad_uploads):
    for name, message in [
        ("notes.txt", "'notes.txt' is not an image"),
        ("bomb_1.5x.png", "above the limit of 25 M pixels"),
    ]:
        with pytest.raises(gradio_client.exceptions.AppError, match=message):
            client.predict(gradio_client.handle_file(str(bad_uploads[name])), api_name="/predict")
    result = client.predict(gradio_client.handle_file(str(uploads["grey.png"])), api_name="/predict")
    assert_label_output(result, demo.classify(predictor, uploads["grey.png"]))


@pytest.mark.slow
def test_app_py_without_a_detector_exits_2_and_the_fixture_shows_why(tmp_path):
    with pytest.raises(RuntimeError, match="exited with code 2") as error:
        with running_demo(tmp_path / "missing", tmp_path / "work", timeout=60):
            pass
    assert str(tmp_path / "missing") in str(error.value)
    assert "python -m helpers.train --data data/toy" in str(error.value)
