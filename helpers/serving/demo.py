"""A web page that asks the trained detector "fake or real?" about an uploaded image (lesson 06).

Gradio is optional (``pip install -e ".[demo]"``); run ``python app/app.py --detector DIR``. The page shows
each class's probability and the threshold; a bad upload gets a message, and the server keeps serving.
Against strangers: ``/predict`` opens only regular files in Gradio's upload folder; uploads are capped
in bytes and pixels and deleted once classified or after 15 minutes; a bounded queue."""

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
# 24 M pixels decode in 0.34-0.56 s, 48 M in 0.58-1.09 s, against a 1 s p95 (benchmarks/demo_decode.py).
MAX_UPLOAD_PIXELS = 25_000_000  # refused from the header, before decoding
# 2 at once gave no better p95 (benchmarks/demo_load.py) and double the peak memory of heavy uploads.
CONCURRENCY = 1
QUEUE_SIZE = 64
DELETE_UNCLASSIFIED = (300, 900)  # every 5 min, delete uploads older than 15 min (gr.Blocks delete_cache)
NAME_SHOWN = 60  # characters of the uploader's file name shown in messages
NO_IMAGE_YET = "No image yet: upload one (or click an example), then click Classify."
NOT_AN_UPLOAD = (
    "This is not an image uploaded to this page, or it was deleted once classified: upload it again."
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


def uploaded_file(upload: str | Mapping[str, Any], upload_folder: str | Path) -> tuple[Path, str]:
    """``(path, the user's file name)`` if ``upload`` is a regular file in ``upload_folder``, else
    ``ImageLoadError(NOT_AN_UPLOAD)``; nothing is opened, so a FIFO cannot block the server."""
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
    """``{display name: probability}`` for one upload (a Gradio file record or a path); ``ImageLoadError``
    (with the user's file name) for a non-image, one over :data:`MAX_UPLOAD_PIXELS` or too elongated."""
    if upload is None:
        raise ImageLoadError(NO_IMAGE_YET)
    path = Path(upload["path"] if isinstance(upload, Mapping) else upload)
    name = str(upload.get("orig_name") or path.name) if isinstance(upload, Mapping) else path.name
    try:
        check_pixel_limit(path, max_pixels=MAX_UPLOAD_PIXELS)
        check_resized_size(path, int(predictor.config["transform"]["resize"]))
        probs = predictor.predict(path)
    except (ImageLoadError, OSError) as err:
        detail = str(err).replace(str(path), name).rstrip(".")  # the user's name, not Gradio's path
        hint = "Upload a PNG, JPEG, WebP, GIF, BMP or TIFF image."
        raise ImageLoadError(f"{name!r} is not an image the demo can use: {detail}. {hint}") from err
    return {display_name(class_name): p for class_name, p in probs.items()}


def find_examples(data_root: Path, cache: Path, per_class: int = EXAMPLES_PER_CLASS) -> list[Path]:
    """A few images per class to click on: from ``data_root/toy``, else a toy set made in ``cache``."""
    toy = data_root / "toy"
    if not any(toy.glob("*/*.png")):
        toy = make_toy_dataset(cache, images_per_class=per_class)
    class_dirs = sorted(p for p in toy.iterdir() if p.is_dir())
    return [path for class_dir in class_dirs for path in sorted(class_dir.glob("*.png"))[:per_class]]


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
    """Where Gradio stores uploads: ``$GRADIO_TEMP_DIR``, else ``<temp dir>/gradio`` (Gradio's docs)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


# Gradio 6.24 (Colab's) warns on every page load that get_current_user was never awaited; harmless here
# (gradio-app/gradio#13758, fixed by #13759). Only this one message is silenced.
GRADIO_UNAWAITED_USER = r"coroutine '.*get_current_user' was never awaited"


def build_demo(
    detector_dir: str | Path, examples: list[str | Path] | None = None, precision: str = "auto"
) -> gr.Blocks:
    """The Gradio page for the detector in ``detector_dir`` (``DetectorError`` when missing or broken);
    ``examples``: image files whose folder names their class."""
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

    title = "Fake or real? A Vision Transformer detector"
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=DELETE_UNCLASSIFIED) as demo:
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
                image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                 label="Image", height=300, elem_id="upload")  # fmt: skip
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                heading = f"Prediction (fake when P(fake) > {predictor.threshold:.3f})"
                label = gr.Label(
                    num_top_classes=len(predictor.class_names), label=heading, elem_id="prediction"
                )
        if examples:
            classes = [display_name(Path(path).parent.name) for path in examples]  # the folder is the class
            in_order = ", then ".join(f"{classes.count(c)} {c}" for c in dict.fromkeys(classes))
            heading = f"Examples: {in_order} (click one, then Classify)"
            gr.Examples(examples=[[str(path)] for path in examples], inputs=[image], label=heading)
        # preprocess=False: `predict` gets the file's record unopened, so `classify` explains a bad upload.
        button.click(
            predict, image, label, api_name="predict", preprocess=False, concurrency_limit=CONCURRENCY
        )
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def launch_demo(
    detector_dir: str | Path, *, examples: list[str | Path] | None = None, host: str | None = None,
    port: int | None = None, share: bool = False, block: bool = True, quiet: bool = False,
) -> gr.Blocks:  # fmt: skip
    """Serve :func:`build_demo`'s page, refusing uploads over :data:`MAX_UPLOAD_BYTES` (lesson 06, the app);
    ``block=False`` returns at once (``.close()`` stops it)."""
    demo = build_demo(detector_dir, examples=examples)
    warnings.filterwarnings("ignore", message=GRADIO_UNAWAITED_USER, category=RuntimeWarning)
    # Only a gr.Error's message reaches the page: strangers never see the server's paths.
    limits = {"max_file_size": MAX_UPLOAD_BYTES, "ssr_mode": False, "prevent_thread_lock": not block}
    demo.launch(server_name=host, server_port=port, share=share, quiet=quiet, **limits)
    return demo


def main(argv: list[str] | None = None) -> NoReturn:
    """``python app/app.py``: a missing or broken detector exits 2, missing gradio or a busy port 1."""
    parser = cli.ArgumentParser(
        prog="python app/app.py", description="Serve the fake-vs-real ViT detector as a web page (Gradio)."
    )
    add = parser.add_argument
    where = f"or a run's (default: ${DETECTOR_ENV}, else build/detector)"
    add("--detector", type=Path, help=f"a detector folder (config.json, model.safetensors) {where}")
    add("--host", help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)")
    add("--port", type=int, help="port (default: $GRADIO_SERVER_PORT, else 7860)")
    add("--no-examples", action="store_true", help="do not show example images")
    add("--share", action="store_true", help="also make a temporary public gradio.live link")
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
