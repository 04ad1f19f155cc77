"""A web page that asks the trained detector "fake or real?" about an uploaded image.

The page is built with Gradio (an optional extra: ``pip install -e ".[demo]"``), so ``gradio`` is
imported inside :func:`build_demo` and nowhere else in ``helpers``. What happens to an upload:

1. Gradio saves the uploaded file to its upload folder; the ``/predict`` endpoint checks that the
   path it is given is such an upload (:func:`uploaded_file`) and calls :func:`classify` with it.
2. :func:`helpers.data.images.load_image_rgb` decodes it (any mode PIL reads: RGBA, greyscale, palette,
   CMYK, 16-bit, the first frame of a GIF) and converts it to RGB.
3. The :class:`~helpers.serving.inference.Predictor` applies the *same eval transform* that was recorded in
   ``config.json`` at training time (resize, centre crop, normalise) and runs the ViT, in the
   precision this machine runs fastest (bf16 on a CPU with bf16 instructions, else fp32; the page
   says which).
4. The page shows the softmax probability of each class.

An upload that is not an image, one with more than :data:`MAX_UPLOAD_PIXELS` pixels, or one too
elongated to resize (:func:`helpers.data.images.check_resized_size`) gets a message on the page and one
line in the server's log; the server keeps serving. Run it with ``python app/app.py --detector DIR``, or from
Python (lesson 06) with :func:`launch_demo`, which applies the same upload cap.

What a stranger can and cannot do (see :func:`uploaded_file` and :func:`build_demo`):

- The ``/predict`` endpoint classifies only regular files inside Gradio's upload folder. Any other
  path a caller names (``/etc/passwd``, a FIFO, a folder, a symlink out of the folder) gets the
  same refusal, :data:`NOT_AN_UPLOAD`, and is never opened.
- An upload is at most :data:`MAX_UPLOAD_BYTES` and :data:`MAX_UPLOAD_PIXELS`; it is deleted as soon
  as it has been classified, and any upload nobody classified is deleted after 15 minutes.
- :data:`CONCURRENCY` predictions run at once; at most :data:`QUEUE_SIZE` more wait in the queue,
  later ones are told that the queue is full.
"""

from __future__ import annotations

import argparse
import html
import logging
import math
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from PIL import Image

from helpers import _cli as cli
from helpers import course
from helpers.data.images import ImageLoadError, check_pixel_limit, check_resized_size
from helpers.data.toy import make_toy_dataset
from helpers.model.vit import count_parameters
from helpers.serving.inference import DetectorError, Predictor, load_predictor

if TYPE_CHECKING:  # only for type hints; gradio is imported when a demo is built
    import gradio as gr

log = logging.getLogger(__name__)

DETECTOR_ENV = "FAKEVIT_DETECTOR"
# Gradio refuses larger uploads (HTTP 413) before they reach the disk. 20 MB holds any ordinary photo
# or screenshot (the model looks at a 224 px crop of it anyway) and bounds what one request can store.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# The most pixels an upload may have; more are refused from the file's header, before decoding. Decoding
# and the eval transform take time in proportion to the pixels: 0.34 s (JPEG) and 0.56 s (PNG) at 24 M,
# 0.58 s and 1.09 s at 48 M (`python benchmarks/demo_decode.py` on the course's shared 2-core machine),
# while one prediction at a time should answer within 1 s at the 95th percentile. 25 M admits a
# phone's usual 12 M photo and a 24 M camera's (6000 x 4000); a 48 M or larger one must be scaled down
# first, which costs the detector nothing: it looks at a 224 px crop.
MAX_UPLOAD_PIXELS = 25_000_000
# One prediction at a time. On 2 cores, 2 at once gave no better p95 in benchmarks/demo_load.py (see
# app/README.md) and would double the peak memory of heavy uploads (2 GB to decode one 88 M pixel
# 16-bit PNG); PyTorch already spreads one prediction over all the cores.
CONCURRENCY = 1
# Requests waiting beyond this get "queue is full" at once instead of a wait of minutes.
QUEUE_SIZE = 64
DELETE_UNCLASSIFIED = (300, 900)  # every 5 min, delete uploads older than 15 min (gr.Blocks delete_cache)
NAME_SHOWN = 60  # characters of the uploader's file name shown in messages
NO_IMAGE_YET = "No image yet: upload one (or click an example), then click Classify."
NOT_AN_UPLOAD = (
    "This is not an image uploaded to this page, or it was deleted after it was classified: "
    "upload the image again."
)
EXAMPLES_PER_CLASS = 2
HOW_TO_MAKE_A_DETECTOR = (
    "Make one with `make run` (the fine-tuning notebook writes build/detector), or train the small "
    "model on the toy dataset (a few minutes on a CPU):\n"
    "  python -m helpers.train --data data/toy --model vit_tiny --recipe scratch --out build/tiny\n"
    "then start the demo with --detector build/tiny (or set $FAKEVIT_DETECTOR)."
)


def display_name(class_name: str) -> str:
    """The label shown on the page: ``"fake_images"`` -> ``"fake"``, ``"real_images"`` -> ``"real"``."""
    return class_name.removesuffix("_images").replace("_", " ")


def upload_path(upload: str | Path | Mapping[str, Any] | None) -> tuple[Path, str]:
    """``(path on disk, name the user gave the file)`` for what the page or the API sent.

    The event is registered with ``preprocess=False`` (see :func:`build_demo`), so Gradio passes its
    file record ``{"path": ..., "orig_name": ...}`` instead of opening the file itself; that way
    *we* decode the image and can explain what is wrong with a bad upload. A plain path works too.
    """
    if upload is None:
        raise ImageLoadError(NO_IMAGE_YET)
    if isinstance(upload, Mapping):
        path = Path(upload["path"])
        return path, str(upload.get("orig_name") or path.name)
    path = Path(upload)
    return path, path.name


def uploaded_file(upload: str | Mapping[str, Any], upload_folder: str | Path) -> tuple[Path, str]:
    """``(path on disk, name the user gave the file)`` when ``upload`` names a regular file in
    ``upload_folder``.

    The ``/predict`` endpoint takes a file record ``{"path": ..., "orig_name": ...}`` that any API
    caller can write, with any path in it. Anything but a regular file inside Gradio's upload
    folder (after following symlinks) raises :class:`~helpers.data.images.ImageLoadError` with the same
    text, :data:`NOT_AN_UPLOAD`, whatever is really there, so the answer tells nothing about the
    server's files. Nothing is opened: ``os.path.realpath`` reads only links and ``os.stat`` only
    the file's metadata, so a FIFO or ``/dev/stdin`` cannot block the server.
    """
    text = upload.get("path") if isinstance(upload, Mapping) else upload
    try:
        folder = Path(os.path.realpath(upload_folder))
        path = Path(os.path.realpath(text))  # TypeError for a path that is not text
        regular = path.parent.is_relative_to(folder) and stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, TypeError, ValueError):  # missing, unreadable, too long, a NUL byte, not text
        regular = False
    if not regular:
        raise ImageLoadError(NOT_AN_UPLOAD)
    name = upload.get("orig_name") if isinstance(upload, Mapping) else None
    return path, shorten(name if isinstance(name, str) and name else path.name)


def shorten(name: str, limit: int = NAME_SHOWN) -> str:
    """``name`` cut to ``limit`` characters (with "..." in the middle) for messages and the log."""
    if len(name) <= limit:
        return name
    half = (limit - 3) // 2
    return name[:half] + "..." + name[-half:]


def classify(predictor: Predictor, upload: str | Path | Mapping[str, Any] | None) -> dict[str, float]:
    """``{display name: probability}`` for one uploaded file; the probabilities sum to 1.

    Raises :class:`~helpers.data.images.ImageLoadError`, naming the file as the user called it, when it is
    not an image PIL can decode, when it has more than :data:`MAX_UPLOAD_PIXELS` pixels (read from its
    header, see :func:`helpers.data.images.check_pixel_limit`) or when it is too elongated (see
    :func:`helpers.data.images.check_resized_size`).
    """
    path, name = upload_path(upload)
    try:
        check_pixel_limit(path, max_pixels=MAX_UPLOAD_PIXELS)
        check_resized_size(path, int(predictor.config["transform"]["resize"]))
        # load_image_rgb (RGB, first frame of an animation), the eval transform from config.json,
        # the ViT and a softmax.
        probs = predictor.predict(path)
    except (ImageLoadError, OSError) as err:
        detail = (
            str(err).replace(str(path), name).rstrip(".")
        )  # the user knows the name, not Gradio's cache path
        raise ImageLoadError(
            f"{name!r} is not an image the demo can use: {detail}. "
            "Upload a PNG, JPEG, WebP, GIF, BMP or TIFF image."
        ) from err
    return {display_name(class_name): p for class_name, p in probs.items()}


def find_examples(data_root: Path, cache: Path, per_class: int = EXAMPLES_PER_CLASS) -> list[Path]:
    """A few images per class to click on: from ``data_root/toy`` if it is there, else a fresh toy set.

    The toy dataset is generated into ``cache`` (a few small PNGs) when ``data_root/toy`` is absent,
    so the page always has examples, also on a machine that never ran the notebooks.
    """
    toy = data_root / "toy"
    if not any(toy.glob("*/*.png")):
        toy = make_toy_dataset(cache, images_per_class=per_class)
    examples: list[Path] = []
    for class_dir in sorted(p for p in toy.iterdir() if p.is_dir()):
        examples += sorted(class_dir.glob("*.png"))[:per_class]
    return examples


PRECISION_NOTES = {
    "bf16": "bf16 (this machine multiplies bf16 natively: faster, probabilities within 0.02 of fp32)",
    "fp16": "fp16 (on the GPU: faster, probabilities within 0.02 of fp32)",
    "fp32": "fp32",
}


def model_summary(predictor: Predictor) -> str:
    """One Markdown line on what was loaded: the model, its size, its eval transform, its classes and
    the precision its predictions run in."""
    config, spec = predictor.config, predictor.config["transform"]
    params = count_parameters(predictor.model)
    classes = ", ".join(display_name(c) for c in predictor.class_names)
    return (
        f"**Model:** `{config['model_name']}`, {params / 1e6:.1f} M parameters. "
        f"**Eval transform:** resize to {spec['resize']} px, centre crop {spec['crop']} px, normalise. "
        f"**Classes:** {classes}. **Precision:** {PRECISION_NOTES[predictor.precision]}."
    )


def check_predictor_answers(predictor: Predictor, detector_dir: str | Path) -> None:
    """Classify one generated image; raise DetectorError unless every probability is a finite number.

    Weights can be finite and still give NaN or infinite outputs (overflow); then every answer the
    demo gave would be meaningless, so it refuses to start instead.
    """
    side = int(predictor.config["transform"]["resize"])
    image = Image.radial_gradient("L").resize((side + 5, side + 2)).convert("RGB")  # resized, then cropped
    probs = predictor.predict(image)
    if not all(math.isfinite(p) for p in probs.values()):
        raise DetectorError(
            f"the detector in {detector_dir} answers {probs} for a test image (not finite numbers); "
            "its weights are broken. Export the detector from a good epoch again."
        )


def build_demo(
    detector_dir: str | Path, examples: list[str | Path] | None = None, precision: str = "auto"
) -> gr.Blocks:
    """The Gradio page for the detector in ``detector_dir``; serve it with :func:`launch_demo`.

    Raises :class:`~helpers.serving.inference.DetectorError` naming the file when the detector is
    missing, its weights do not fit its ``config.json``, or its first prediction (on a generated
    image, see :func:`check_predictor_answers`) is not finite. ``examples``: image files shown under
    the upload box (each one's folder name is its class).

    ``precision``: the numeric format of predictions, "auto" by default (see
    :func:`helpers.serving.inference.load_predictor`); the page shows which one runs.

    The queue runs :data:`CONCURRENCY` predictions at once and holds at most :data:`QUEUE_SIZE`.
    Uploads are capped at :data:`MAX_UPLOAD_BYTES` only when it is launched with that limit, as
    :func:`launch_demo` does.
    """
    import gradio as gr
    from gradio.utils import get_upload_folder  # $GRADIO_TEMP_DIR, else <temp dir>/gradio

    predictor = load_predictor(detector_dir, device="cpu", precision=precision)
    check_predictor_answers(predictor, detector_dir)
    upload_folder = get_upload_folder()

    def predict(upload: Mapping[str, Any] | None) -> dict[str, float]:
        """The ``/predict`` endpoint: an uploaded image file in, ``{class: probability}`` out."""
        if upload is None:  # Classify clicked before any upload
            raise gr.Error(NO_IMAGE_YET, title="Cannot classify this upload", print_exception=False)
        given = upload.get("path") if isinstance(upload, Mapping) else upload
        try:
            path, name = uploaded_file(upload, upload_folder)
        except ImageLoadError as err:
            log.warning("refused a request naming %s: not an upload", shorten(repr(given)))
            raise gr.Error(str(err), title="Cannot classify this upload", print_exception=False) from None
        try:
            return classify(predictor, {"path": str(path), "orig_name": name})
        except ImageLoadError as err:
            log.warning("refused upload %r: %s", name, " ".join(str(err).split()))
            # gr.Error's message is shown as HTML: escape <, > and & in the uploader's file name.
            message = html.escape(str(err), quote=False)
            raise gr.Error(message, title="Cannot classify this upload", print_exception=False) from None
        finally:
            # Only files that Gradio's upload route stored (not the examples, which stay).
            if given in getattr(demo, "upload_file_set", ()):
                path.unlink(missing_ok=True)

    with gr.Blocks(
        title="Fake or real? A Vision Transformer detector",
        analytics_enabled=False,
        delete_cache=DELETE_UNCLASSIFIED,
    ) as demo:
        gr.Markdown(
            "# Fake or real?\n"
            "Upload an image: a Vision Transformer (ViT) trained in this course estimates the "
            "probability that it was made by an AI image generator (*fake*) or is a photograph (*real*). "
            "It is a teaching model: its probabilities are a guess about images like its training "
            "data, not proof.\n\n" + model_summary(predictor)
        )
        with gr.Row():
            with gr.Column():
                # image_mode=None keeps RGBA, greyscale, CMYK, ... as uploaded; load_image_rgb converts.
                image = gr.Image(
                    type="filepath",
                    image_mode=None,
                    sources=["upload", "clipboard"],
                    label="Image",
                    height=300,
                    elem_id="upload",
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                label = gr.Label(
                    num_top_classes=len(predictor.class_names), label="Prediction", elem_id="prediction"
                )
        if examples:
            classes = [display_name(Path(path).parent.name) for path in examples]  # the folder is the class
            in_order = ", then ".join(f"{classes.count(c)} {c}" for c in dict.fromkeys(classes))
            gr.Examples(
                examples=[[str(path)] for path in examples],
                inputs=[image],
                label=f"Examples: {in_order} (click one, then Classify)",
            )
        # preprocess=False: Gradio hands `predict` the uploaded file's record instead of opening it
        # first, so a bad upload reaches `classify`, which explains what is wrong.
        button.click(
            predict,
            inputs=image,
            outputs=label,
            api_name="predict",
            preprocess=False,
            concurrency_limit=CONCURRENCY,
        )
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def launch_demo(
    detector_dir: str | Path,
    *,
    examples: list[str | Path] | None = None,
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    block: bool = True,
    quiet: bool = False,
) -> gr.Blocks:
    """Build the page for ``detector_dir`` (:func:`build_demo`) and serve it with the upload cap.

    Used by ``python app/app.py`` and lesson 06. Uploads above :data:`MAX_UPLOAD_BYTES` are refused
    (HTTP 413) before they are stored. ``host`` and ``port`` default to ``$GRADIO_SERVER_NAME`` and
    ``$GRADIO_SERVER_PORT``, else 127.0.0.1:7860; ``share=True`` also opens a temporary public
    gradio.live link. ``block=False`` returns at once with the server running in the background
    (a notebook); call ``.close()`` on the returned page to stop it. ``block=True`` serves until
    Ctrl-C.
    """
    demo = build_demo(detector_dir, examples=examples)
    # A gr.Error's message always reaches the page; other errors show only "Error" there (their
    # traceback goes to this terminal), so strangers never see the server's paths.
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        ssr_mode=False,
        max_file_size=MAX_UPLOAD_BYTES,
        prevent_thread_lock=not block,
        quiet=quiet,
    )
    return demo


def main(argv: list[str] | None = None) -> NoReturn:
    """Command line: ``python app/app.py [--detector DIR] [--host HOST] [--port PORT]``; always exits.

    A missing or broken detector exits with status 2 and one ``error:`` line naming the folder or
    file and how to make a detector; a port already in use or missing gradio exits with status 1
    (see :mod:`helpers._cli`); Ctrl-C ends serving.
    """
    parser = cli.ArgumentParser(
        prog="python app/app.py", description="Serve the fake-vs-real ViT detector as a web page (Gradio)."
    )
    parser.add_argument(
        "--detector",
        type=Path,
        default=None,
        help="folder with model.safetensors and config.json, or a training run's folder "
        f"(default: ${DETECTOR_ENV}, else build/detector)",
    )
    parser.add_argument(
        "--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else 7860)"
    )
    parser.add_argument("--no-examples", action="store_true", help="do not show example images")
    parser.add_argument("--share", action="store_true", help="also make a temporary public gradio.live link")
    args = parser.parse_args(argv)
    sys.exit(cli.run(lambda: serve(args)))


def serve(args: argparse.Namespace) -> int:
    """What ``python app/app.py`` does once its arguments are parsed; serves until Ctrl-C."""
    try:
        import gradio  # noqa: F401  (only to fail here with a clear message)
    except ImportError as err:
        raise cli.CommandError(f'the demo needs gradio ({err}): pip install -e ".[demo]"') from err
    detector = args.detector or Path(os.environ.get(DETECTOR_ENV) or course.detector_dir())
    if not detector.is_dir():
        raise cli.CommandError(f"no detector folder at {detector}. {HOW_TO_MAKE_A_DETECTOR}", cli.USAGE_ERROR)
    examples = None
    if not args.no_examples:
        examples = find_examples(course.data_dir(), cache=course.project_root() / "build" / "demo_examples")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        launch_demo(detector, examples=examples, host=args.host, port=args.port, share=args.share)
    except DetectorError as err:
        raise cli.CommandError(str(err), cli.USAGE_ERROR) from err
    return 0
