"""helpers.data.images: every kind of image file becomes RGB; every bad one raises ImageLoadError naming
it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.data.images import ImageLoadError, check_pixel_limit, list_image_files, load_image_rgb


def _encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


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
    assert tuple(loaded["rgba.png"][0, 0]) == (255, 255, 255)
    assert tuple(loaded["rgba.png"][0, 1]) == (10, 20, 30)
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


def test_load_image_rgb_raises_image_load_error_naming_the_file(tmp_path, monkeypatch, random_rgb):
    photo = _encoded(random_rgb(np.random.default_rng(0), 64, 64), "JPEG")
    bad = {
        "empty.png": b"",
        "truncated.jpg": photo[: len(photo) // 2],
        "truncated.png": _encoded(random_rgb(np.random.default_rng(1), 64, 64), "PNG")[:300],
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


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_check_pixel_limit_refuses_what_pil_would_only_warn_about(tmp_path, monkeypatch):
    path = _save(tmp_path, "wide.png", Image.new("L", (40, 40)))  # 1,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    check_pixel_limit(path)  # under the limit: nothing happens
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1.6x the limit: PIL would only warn
    with pytest.raises(ImageLoadError, match="40x40 pixels.*decompression-bomb"):
        check_pixel_limit(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 3.2x the limit: PIL refuses to open it
    with pytest.raises(ImageLoadError, match="above PIL's decompression-bomb limit"):
        check_pixel_limit(path)


def test_list_image_files_keeps_image_extensions_and_skips_hidden_and_macos_junk(tmp_path):
    for name in ("b.PNG", "a.jpg", "notes.txt", ".hidden.png", "sub/c.webp", ".git/d.png", "__MACOSX/e.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")  # nothing is decoded here
    assert [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)] == [
        "a.jpg",
        "b.PNG",
        "sub/c.webp",
    ]


def test_sixteen_bit_images_scale_exactly_as_the_float_formula_without_a_float_copy(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # every 16-bit value once
    noise = rng.integers(0, 65536, (64, 96), dtype=np.uint16)
    for name, values in (("ramp", ramp), ("noise", noise)):
        path = tmp_path / f"{name}.png"
        Image.fromarray(values).save(path)  # a 16-bit greyscale PNG
        expected = np.clip(np.round(values.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
        got = np.asarray(load_image_rgb(path))
        assert got.dtype == np.uint8 and np.array_equal(got[..., 0], expected), name
        assert np.array_equal(got[..., 0], got[..., 2])
    wide = np.array([[-5, 0, 255, 256, 32896, 65535, 70000]], dtype=np.int32)  # mode "I", 32-bit
    got = np.asarray(load_image_rgb(Image.fromarray(wide, "I")))[0, :, 0]
    assert got.tolist() == [0, 0, 1, 1, 128, 255, 255]
    small = np.array([[0, 7, 255]], dtype=np.int32)  # mode "I" holding 8-bit values: kept as they are
    assert np.asarray(load_image_rgb(Image.fromarray(small, "I")))[0, :, 0].tolist() == [0, 7, 255]

    def no_floats(*args, **kwargs):
        raise AssertionError("16-bit images must not go through float64")

    monkeypatch.setattr(np, "round", no_floats)
    load_image_rgb(tmp_path / "ramp.png")


def test_check_pixel_limit_takes_a_smaller_limit(tmp_path):
    path = _save(tmp_path, "big.png", Image.new("L", (40, 40)))
    check_pixel_limit(path, max_pixels=1600)
    with pytest.raises(ImageLoadError, match=r"40x40 pixels .* limit of 0 M pixels \(max_pixels\)"):
        check_pixel_limit(path, max_pixels=1599)
