"""The demo as a stranger uses it: only its own uploads are read, uploads are capped and deleted,
bad uploads cost one log line, and a broken detector stops it at start (issue 13).

Most tests talk to a real `python app/app.py` on a loopback port with raw HTTP, the way any API
caller can: POST /gradio_api/upload, then POST /gradio_api/call/predict with a file record whose
"path" the caller chose.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from helpers.data.images import ImageLoadError
from helpers.serving import demo
from helpers.serving.demo_server import running_demo
from helpers.serving.inference import DetectorError, load_predictor

gr = pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")


FILE_META = {"_type": "gradio.FileData"}  # what Gradio's own front end puts in a file record


@pytest.fixture(scope="module")
def detector(tmp_path_factory, tiny_detector) -> Path:
    return tiny_detector(tmp_path_factory.mktemp("detector"), seed=0)[1]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# uploaded_file(): which paths the endpoint accepts, in-process
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path, image_file) -> tuple[Path, Path]:
    """``(upload folder holding upload/photo.png, a folder outside it holding photo.png)``."""
    uploads, outside = tmp_path / "uploads", tmp_path / "outside"
    (uploads / "abc").mkdir(parents=True)
    outside.mkdir()
    for folder in (uploads / "abc", outside):
        (folder / "photo.png").write_bytes(image_file.read_bytes())
    return uploads, outside


def test_a_regular_file_in_the_upload_folder_is_accepted(folders):
    uploads, _ = folders
    path = uploads / "abc" / "photo.png"
    assert demo.uploaded_file({"path": str(path), "orig_name": "holiday.png"}, uploads) == (
        path,
        "holiday.png",
    )
    assert demo.uploaded_file(str(path), uploads) == (path, "photo.png")
    inside_link = uploads / "abc" / "link.png"
    inside_link.symlink_to(path)  # a link that stays inside: its target is what is read
    assert demo.uploaded_file({"path": str(inside_link)}, uploads) == (path, "photo.png")


def test_everything_else_gets_the_same_refusal_without_being_opened(folders, monkeypatch):
    uploads, outside = folders
    os.mkfifo(uploads / "abc" / "fifo.png")
    os.mkfifo(outside / "fifo.png")
    (uploads / "abc" / "out.png").symlink_to(outside / "photo.png")  # a link out of the folder
    locked = outside / "locked.png"
    locked.write_bytes((outside / "photo.png").read_bytes())
    locked.chmod(0)
    paths = [
        outside / "photo.png",  # a real image, but not an upload
        outside / "missing.png",
        outside,
        locked,
        outside / "fifo.png",
        uploads / "abc" / "fifo.png",
        uploads / "abc" / "out.png",
        uploads / "abc" / "missing.png",
        uploads / "abc",
        uploads,
        f"{uploads}/abc/../../outside/photo.png",
        "/dev/stdin",
        "/etc/passwd",
        "photo.png",  # relative: resolved against the working directory, here `outside`
    ]
    monkeypatch.chdir(outside)
    opened = []
    monkeypatch.setattr("builtins.open", lambda *args, **kwargs: opened.append(args))
    for path in paths:
        with pytest.raises(ImageLoadError) as error:
            demo.uploaded_file({"path": str(path)}, uploads)
        assert str(error.value) == demo.NOT_AN_UPLOAD, path
    for weird in [None, 5, ["a"], {"nested": 1}, "bad\0name.png", "x" * 5000, ""]:
        with pytest.raises(ImageLoadError, match="not an image uploaded to this page"):
            demo.uploaded_file({"path": weird}, uploads)
    assert opened == []


def test_long_names_are_shortened():
    assert demo.shorten("cat.png") == "cat.png"
    short = demo.shorten("a" * 100 + ".png")
    assert (
        len(short) <= demo.NAME_SHOWN
        and short.startswith("aaa")
        and short.endswith(".png")
        and "..." in short
    )


def test_an_image_too_elongated_to_resize_is_refused_before_decoding(detector, tmp_path):
    """Resizing the shorter side of 20000 x 1 to 32 px first would make 32 x 640,000 pixels."""
    predictor = load_predictor(detector)
    assert predictor.config["transform"]["resize"] == 32
    Image.new("RGB", (20000, 1)).save(tmp_path / "strip.png")
    Image.new("RGB", (1, 20000)).save(tmp_path / "tall.png")
    Image.new("RGB", (2000, 100)).save(tmp_path / "panorama.png")  # 20:1 is fine: 640 x 32 after resizing
    for name in ("strip.png", "tall.png"):
        with pytest.raises(ImageLoadError, match=r"too elongated: .* 20 M pixels \(the limit is 16 M\)"):
            demo.classify(predictor, tmp_path / name)
    assert set(demo.classify(predictor, tmp_path / "panorama.png")) == {"fake", "real"}


def test_uploads_above_the_pixel_cap_are_refused_from_their_header(detector, tmp_path, monkeypatch):
    """A 24 M pixel camera photo (6000 x 4000) is classified; one pixel row more than 25 M is refused
    before a single pixel is decoded, with a message that says how to fix it."""
    predictor = load_predictor(detector)
    assert demo.MAX_UPLOAD_PIXELS == 25_000_000
    Image.new("L", (6000, 4000)).save(tmp_path / "camera.png")  # 24.0 M pixels, flat: small on disk
    Image.new("L", (6000, 4167)).save(tmp_path / "too_big.png")  # 25.002 M pixels
    assert set(demo.classify(predictor, tmp_path / "camera.png")) == {"fake", "real"}

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image above the cap must be refused from its header")

    monkeypatch.setattr(predictor, "predict", no_decoding)
    refusal = r"'too_big.png' .* 6000x4167 pixels \(25 M\) is above .* scale it down to at most 25 M pixels"
    with pytest.raises(ImageLoadError, match=refusal):
        demo.classify(predictor, tmp_path / "too_big.png")


# ---------------------------------------------------------------------------------------------
# build_demo(): the endpoint in-process, the start-up check
# ---------------------------------------------------------------------------------------------


def endpoint(page):
    [function] = [fn for fn in page.fns.values() if fn.api_name == "predict"]
    return function


def test_endpoint_settings_and_examples_are_kept(detector, image_file, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    page = demo.build_demo(detector, examples=[image_file])
    function = endpoint(page)
    assert function.concurrency_limit == demo.CONCURRENCY and page._queue.max_size == demo.QUEUE_SIZE
    # Gradio copied the example into its upload folder; the page sends that path when it is clicked.
    [examples] = [block for block in page.blocks.values() if isinstance(block, gr.Dataset)]
    example = examples.samples[0][0]
    assert Path(example["path"]).is_relative_to(tmp_path / "gradio")
    first = function.fn(example)
    assert function.fn(example) == first  # an example is never deleted: it can be clicked again
    assert Path(example["path"]).is_file()
    # A file Gradio's upload route stored is deleted once classified, also when it is refused.
    for name, content in [("upload.png", image_file.read_bytes()), ("notes.txt", b"not a picture")]:
        stored = tmp_path / "gradio" / "0123" / name
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(content)
        page.upload_file_set.add(str(stored))
        if name == "upload.png":
            assert function.fn({"path": str(stored)}) == first
        else:
            with pytest.raises(gr.Error, match="'notes.txt' is not an image"):
                function.fn({"path": str(stored)})
        assert not stored.exists()


@pytest.mark.parametrize("poison", ["nan", "huge"])
def test_a_detector_that_answers_nan_is_refused_at_start(detector, tmp_path, capsys, poison):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((detector / "config.json").read_text())
    weights = load_file(detector / "model.safetensors")
    if poison == "nan":  # caught while loading
        weights["head.bias"][0] = float("nan")
        match = r"'head\.bias' holds 1 NaN or infinite"
    else:  # finite weights whose logits overflow: 192 features of 1, each times 3e38 -> inf
        weights["norm.weight"].zero_()
        weights["norm.bias"].fill_(1.0)
        weights["head.weight"].fill_(3e38)
        match = "not finite numbers"
    save_file(weights, broken / "model.safetensors")
    with pytest.raises(DetectorError, match=match):
        demo.build_demo(broken)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--detector", str(broken), "--no-examples"])
    assert exit_info.value.code == 2
    assert str(broken) in capsys.readouterr().err
    if poison == "huge":  # the weights themselves load fine: only the prediction shows the problem
        predictor = load_predictor(broken)
        assert not all(np.isfinite(list(predictor.predict(Image.new("RGB", (40, 40))).values())))


# ---------------------------------------------------------------------------------------------
# The real server, called with raw HTTP
# ---------------------------------------------------------------------------------------------


class Server:
    """A running `python app/app.py` and the few HTTP calls a stranger can make to it."""

    def __init__(self, url: str, workdir: Path):
        self.url = url
        self.upload_folder = workdir / "gradio"  # GRADIO_TEMP_DIR, set by running_demo
        self.log = workdir / "server.log"

    def upload(self, name: str, content: bytes) -> httpx.Response:
        return httpx.post(f"{self.url}gradio_api/upload", files={"files": (name, content)}, timeout=60)

    def predict(self, record, timeout: float = 60) -> tuple[str, object]:
        """``("complete", outputs)`` or ``("error", message)`` for one call of /predict."""
        start = httpx.post(f"{self.url}gradio_api/call/predict", json={"data": [record]}, timeout=timeout)
        event_id = start.json()["event_id"]
        stream = httpx.get(f"{self.url}gradio_api/call/predict/{event_id}", timeout=timeout).text
        event = data = None
        for line in stream.splitlines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event in ("complete", "error"):
                data = json.loads(line.removeprefix("data: "))
                return event, (data["error"] if event == "error" else data)
        raise AssertionError(f"no result in {stream!r}")

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@pytest.fixture(scope="module")
def server(detector, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("server")
    try:
        with running_demo(detector, workdir, extra_args=["--no-examples"]) as url:
            yield Server(url, workdir)
    except RuntimeError as err:
        pytest.fail(str(err))


def uploaded_record(server: Server, name: str, content: bytes, **extra) -> dict:
    response = server.upload(name, content)
    assert response.status_code == 200, response.text
    [path] = response.json()
    return {"path": path, "orig_name": name, "meta": FILE_META, **extra}


@pytest.mark.slow
def test_server_refuses_every_path_that_is_not_an_upload_with_one_text(server, image_file, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "photo.png").write_bytes(image_file.read_bytes())
    os.mkfifo(outside / "fifo.png")
    locked = outside / "locked.png"
    locked.write_bytes(image_file.read_bytes())
    locked.chmod(0)
    inside = server.upload_folder / "planted"
    inside.mkdir(parents=True, exist_ok=True)
    (inside / "out.png").unlink(missing_ok=True)
    (inside / "out.png").symlink_to(outside / "photo.png")
    paths = [
        outside / "photo.png",
        outside / "missing.png",
        outside,
        locked,
        inside / "out.png",
        inside / "missing.png",
        inside,
        "/etc/passwd",
        "/etc/shadow",
        "/dev/stdin",
    ]
    # A record without Gradio's "meta" tag skips Gradio's own checks and reaches the demo's.
    answers = {str(path): server.predict({"path": str(path), "orig_name": "x.png"}) for path in paths}
    assert set(answers.values()) == {("error", demo.NOT_AN_UPLOAD)}, answers
    # With the tag, Gradio itself refuses paths outside its folder (with no message); the demo
    # refuses the rest. Either way the answer says nothing about what is there.
    tagged = {str(p): server.predict({"path": str(p), "meta": FILE_META}) for p in paths}
    assert set(tagged.values()) <= {("error", None), ("error", demo.NOT_AN_UPLOAD)}, tagged
    outside_answers = {
        tagged[str(p)] for p in (outside / "photo.png", outside / "missing.png", locked, outside)
    }
    assert len(outside_answers) == 1 and tagged["/etc/shadow"] in outside_answers
    assert tagged[str(inside / "missing.png")] == tagged[str(inside)]  # the link out: Gradio refuses it
    # The same real image, uploaded, is classified: the refusals above are not a broken endpoint.
    kind, outputs = server.predict(uploaded_record(server, "photo.png", image_file.read_bytes()))
    assert kind == "complete" and outputs[0]["label"] in ("fake", "real")


@pytest.mark.slow
def test_a_fifo_is_answered_at_once_and_the_server_keeps_serving(server, image_file, tmp_path):
    """Opening a FIFO waits for a writer; before this fix that froze the only worker for ~80 s."""
    os.mkfifo(tmp_path / "outside.png")
    inside = server.upload_folder / "fifo"
    inside.mkdir(parents=True, exist_ok=True)
    os.mkfifo(inside / "inside.png")
    for record in [
        {"path": str(tmp_path / "outside.png")},
        {"path": str(inside / "inside.png")},
        {"path": str(inside / "inside.png"), "meta": FILE_META},
        {"path": "/dev/stdin"},
    ]:
        start = time.monotonic()
        answer = server.predict(record, timeout=1.0)  # httpx raises ReadTimeout if it blocks
        assert answer == ("error", demo.NOT_AN_UPLOAD) and time.monotonic() - start < 1.0
    kind, _ = server.predict(uploaded_record(server, "after.png", image_file.read_bytes()))
    assert kind == "complete"


@pytest.mark.slow
def test_uploads_are_deleted_once_classified(server, detector, image_file):
    good = uploaded_record(server, "good.png", image_file.read_bytes())
    bad = uploaded_record(server, "notes.txt", b"a shopping list, not a picture\n")
    assert Path(good["path"]).is_file() and Path(bad["path"]).is_file()
    kind, outputs = server.predict(good)
    expected = demo.classify(load_predictor(detector), image_file)
    assert kind == "complete"
    assert {c["label"]: c["confidence"] for c in outputs[0]["confidences"]} == pytest.approx(expected)
    assert server.predict(bad) == (
        "error",
        "'notes.txt' is not an image the demo can use: cannot identify "
        "image file 'notes.txt'. Upload a PNG, JPEG, WebP, GIF, BMP or TIFF image.",
    )
    assert not Path(good["path"]).exists() and not Path(bad["path"]).exists()
    assert server.predict(good) == ("error", demo.NOT_AN_UPLOAD)  # classified once: upload it again


@pytest.mark.slow
def test_oversized_uploads_are_refused_before_they_are_stored(server):
    before = {p for p in server.upload_folder.rglob("*") if p.is_file()}
    response = server.upload("huge.png", b"\0" * (demo.MAX_UPLOAD_BYTES + 1))
    assert response.status_code == 413 and "maximum allowed size" in response.text
    assert {p for p in server.upload_folder.rglob("*") if p.is_file()} == before
    at_limit = uploaded_record(
        server, "at_limit.bin", b"\0" * demo.MAX_UPLOAD_BYTES
    )  # the cap itself is fine
    kind, message = server.predict(at_limit)
    assert kind == "error" and "'at_limit.bin' is not an image" in message
    assert not Path(at_limit["path"]).exists()


@pytest.mark.slow
def test_the_uploaders_file_name_is_escaped_and_shortened(server):
    name = "<img src=x onerror=alert(1)>" + "y" * 100 + ".txt"
    record = uploaded_record(server, "plain.txt", b"not a picture", orig_name=name)
    kind, message = server.predict(record)
    assert kind == "error"
    assert "<img" not in message and "&lt;img src=x onerror=alert(1)&gt;" in message
    assert "y" * 100 not in message and "...y" in message


@pytest.mark.slow
def test_a_bad_upload_logs_one_line_and_no_traceback(server):
    before = server.log_lines()
    record = uploaded_record(server, "broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    kind, _ = server.predict(record)
    assert kind == "error"
    deadline = time.monotonic() + 5
    while len(server.log_lines()) == len(before) and time.monotonic() < deadline:
        time.sleep(0.05)  # the log is a file the server appends to
    new = server.log_lines()[len(before) :]
    assert len(new) == 1 and "WARNING" in new[0] and "refused upload 'broken.png'" in new[0], new
    assert not any("Traceback" in line for line in new)
