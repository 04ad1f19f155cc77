"""A web page that asks the trained detector "fake or real?" about an uploaded image (lesson 06).

Gradio is an optional extra (``pip install -e ".[demo]"``), imported only in :func:`build_demo`. Run it
with ``python app/app.py --detector DIR`` or :func:`launch_demo`. An upload is decoded to RGB, passed
through the eval transform in ``config.json`` and the ViT; the page shows each class's probability and
the decision threshold (``config.json``'s, chosen for a false-positive rate, else 0.5, said so).
A bad upload gets a message on the page and a line in the log; the server keeps serving.

Against strangers: ``/predict`` opens only regular files in Gradio's upload folder (anything else gets
:data:`NOT_AN_UPLOAD`); uploads are capped (:data:`MAX_UPLOAD_BYTES`, :data:`MAX_UPLOAD_PIXELS`) and
deleted once classified or after 15 minutes; :data:`CONCURRENCY` run at once, :data:`QUEUE_SIZE` wait.
"""

from __future__ import annotations

import argparse
import html
import logging
import math
import os
import stat
import sys
import tempfile
import warnings
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
# Gradio refuses larger uploads (HTTP 413) before they reach the disk; 20 MB holds any ordinary photo.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Refused from the header, before decoding: a 24 M-pixel photo decodes in 0.34 s (JPEG) to 0.56 s (PNG),
# 48 M in 0.58 to 1.09 s (benchmarks/demo_decode.py, 2 cores), against a 1 s p95 target.
MAX_UPLOAD_PIXELS = 25_000_000
# 2 at once gave no better p95 (benchmarks/demo_load.py) and double the peak memory of heavy uploads.
CONCURRENCY = 1
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
    """``(path on disk, the user's file name)`` for a Gradio file record or a path."""
    if upload is None:
        raise ImageLoadError(NO_IMAGE_YET)
    if isinstance(upload, Mapping):
        path = Path(upload["path"])
        return path, str(upload.get("orig_name") or path.name)
    path = Path(upload)
    return path, path.name


def uploaded_file(upload: str | Mapping[str, Any], upload_folder: str | Path) -> tuple[Path, str]:
    """``(path on disk, the user's file name)`` when ``upload`` names a regular file in ``upload_folder``,
    else ``ImageLoadError(NOT_AN_UPLOAD)``. Nothing is opened, so a FIFO cannot block the server."""
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
    """``{display name: probability}`` for one uploaded file. Raises ``ImageLoadError``, naming the file
    as the user called it, when it is not an image, over :data:`MAX_UPLOAD_PIXELS` or too elongated."""
    path, name = upload_path(upload)
    try:
        check_pixel_limit(path, max_pixels=MAX_UPLOAD_PIXELS)
        check_resized_size(path, int(predictor.config["transform"]["resize"]))
        probs = predictor.predict(path)
    except (ImageLoadError, OSError) as err:
        detail = str(err).replace(str(path), name).rstrip(".")  # the user's name, not Gradio's path
        raise ImageLoadError(
            f"{name!r} is not an image the demo can use: {detail}. "
            "Upload a PNG, JPEG, WebP, GIF, BMP or TIFF image."
        ) from err
    return {display_name(class_name): p for class_name, p in probs.items()}


def find_examples(data_root: Path, cache: Path, per_class: int = EXAMPLES_PER_CLASS) -> list[Path]:
    """A few images per class to click on: from ``data_root/toy``, else a toy set made in ``cache``."""
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
    """One Markdown line: the model, its size, its eval transform, its classes and its precision."""
    config, spec = predictor.config, predictor.config["transform"]
    params = count_parameters(predictor.model)
    classes = ", ".join(display_name(c) for c in predictor.class_names)
    return (
        f"**Model:** `{config['model_name']}`, {params / 1e6:.1f} M parameters. "
        f"**Eval transform:** resize to {spec['resize']} px, centre crop {spec['crop']} px, normalise. "
        f"**Classes:** {classes}. **Precision:** {PRECISION_NOTES[predictor.precision]}. "
        f"**Decision:** {predictor.threshold_note()}."
    )


def check_predictor_answers(predictor: Predictor, detector_dir: str | Path) -> None:
    """Raise DetectorError unless a generated image gets finite probabilities (weights can overflow)."""
    side = int(predictor.config["transform"]["resize"])
    image = Image.radial_gradient("L").resize((side + 5, side + 2)).convert("RGB")  # resized, then cropped
    probs = predictor.predict(image)
    if not all(math.isfinite(p) for p in probs.values()):
        raise DetectorError(
            f"the detector in {detector_dir} answers {probs} for a test image (not finite numbers); "
            "its weights are broken. Export the detector from a good epoch again."
        )


def gradio_upload_folder() -> Path:
    """Where Gradio stores uploads: ``$GRADIO_TEMP_DIR``, else ``<the system's temp dir>/gradio``, as
    Gradio's guide to its environment variables documents (read when the demo is built)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


# Gradio 6.24's /config route calls its async get_current_user without awaiting it, so every page load
# logs "RuntimeWarning: coroutine '...get_current_user' was never awaited" (harmless: the page only gets
# a wrong username, which this demo does not use). Gradio's bug, gradio-app/gradio#13758, fixed by
# #13759; Colab has 6.24. Only this one message is silenced.
GRADIO_UNAWAITED_USER = r"coroutine '.*get_current_user' was never awaited"


def build_demo(
    detector_dir: str | Path, examples: list[str | Path] | None = None, precision: str = "auto"
) -> gr.Blocks:
    """The Gradio page for the detector in ``detector_dir`` (``DetectorError`` when missing or broken);
    ``examples``: image files, each one's folder name its class. Serve it with :func:`launch_demo`."""
    import gradio as gr

    predictor = load_predictor(detector_dir, device="cpu", precision=precision)
    check_predictor_answers(predictor, detector_dir)
    upload_folder = gradio_upload_folder()

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
                    num_top_classes=len(predictor.class_names),
                    label=f"Prediction (fake when P(fake) > {predictor.threshold:.3f})",
                    elem_id="prediction",
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
    """Serve :func:`build_demo`'s page, refusing uploads over :data:`MAX_UPLOAD_BYTES` (lesson 06, the app);
    ``block=False`` returns at once (``.close()`` stops it), ``share`` adds a public gradio.live link."""
    demo = build_demo(detector_dir, examples=examples)
    warnings.filterwarnings("ignore", message=GRADIO_UNAWAITED_USER, category=RuntimeWarning)
    # Only a gr.Error's message reaches the page: strangers never see the server's paths.
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
    """``python app/app.py``: a missing or broken detector exits with status 2 and one ``error:`` line,
    missing gradio or a busy port with 1 (:mod:`helpers._cli`)."""
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
