"""A web page that asks the trained detector "fake or real?" about an uploaded image.

The page is built with Gradio (an optional extra: ``pip install -e ".[demo]"``), so ``gradio`` is
imported inside :func:`build_demo` and nowhere else in ``helpers``. What happens to an upload:

1. Gradio saves the uploaded file to its cache folder and calls :func:`classify` with its path.
2. :func:`helpers.images.load_image_rgb` decodes it (any mode PIL reads: RGBA, greyscale, palette,
   CMYK, 16-bit, the first frame of a GIF) and converts it to RGB.
3. The :class:`~helpers.inference.Predictor` applies the *same eval transform* that was recorded in
   ``config.json`` at training time (resize, centre crop, normalise) and runs the ViT.
4. The page shows the softmax probability of each class.

An upload that is not an image, or one larger than PIL's decompression-bomb limit, gets a message
on the page; the server keeps serving. Run it with ``python app/app.py --detector DIR``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers import course
from helpers.images import ImageLoadError, check_pixel_limit
from helpers.inference import DetectorError, Predictor, load_predictor
from helpers.toy import make_toy_dataset
from helpers.vit import count_parameters

if TYPE_CHECKING:  # only for type hints; gradio is imported when a demo is built
    import gradio as gr

DETECTOR_ENV = "FAKEVIT_DETECTOR"
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
        raise ImageLoadError("No image yet: upload one (or click an example), then click Classify.")
    if isinstance(upload, Mapping):
        path = Path(upload["path"])
        return path, str(upload.get("orig_name") or path.name)
    path = Path(upload)
    return path, path.name


def classify(predictor: Predictor, upload: str | Path | Mapping[str, Any] | None) -> dict[str, float]:
    """``{display name: probability}`` for one uploaded file; the probabilities sum to 1.

    Raises :class:`~helpers.images.ImageLoadError`, naming the file as the user called it, when it is
    not an image PIL can decode or when it is too large (see :func:`helpers.images.check_pixel_limit`).
    """
    path, name = upload_path(upload)
    try:
        check_pixel_limit(path)
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


def model_summary(predictor: Predictor) -> str:
    """One Markdown line on what was loaded: the model, its size, its eval transform and its classes."""
    config, spec = predictor.config, predictor.config["transform"]
    params = count_parameters(predictor.model)
    classes = ", ".join(display_name(c) for c in predictor.class_names)
    return (
        f"**Model:** `{config['model_name']}`, {params / 1e6:.1f} M parameters. "
        f"**Eval transform:** resize to {spec['resize']} px, centre crop {spec['crop']} px, normalise. "
        f"**Classes:** {classes}."
    )


def build_demo(detector_dir: str | Path, examples: list[str | Path] | None = None) -> gr.Blocks:
    """The Gradio page for the detector in ``detector_dir``; call ``.launch()`` on it to serve it.

    Raises :class:`~helpers.inference.DetectorError` naming the file when the detector is
    missing or its weights do not fit its ``config.json``. ``examples``: image files shown under
    the upload box (each one's folder name is its class).
    """
    import gradio as gr

    predictor = load_predictor(detector_dir, device="cpu")

    def predict(upload: Mapping[str, Any] | None) -> dict[str, float]:
        """The ``/predict`` endpoint: an image file in, ``{class: probability}`` out."""
        try:
            return classify(predictor, upload)
        except ImageLoadError as err:
            raise gr.Error(str(err), title="Cannot classify this upload") from err

    # delete_cache: uploads are removed from Gradio's cache folder after an hour.
    with gr.Blocks(
        title="Fake or real? A Vision Transformer detector",
        analytics_enabled=False,
        delete_cache=(3600, 3600),
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
        button.click(predict, inputs=image, outputs=label, api_name="predict", preprocess=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python app/app.py [--detector DIR] [--host HOST] [--port PORT]``.

    Exits with code 2 and a message saying how to make a detector when there is none, or naming
    the file when the detector does not load.
    """
    parser = argparse.ArgumentParser(
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

    detector = args.detector or Path(os.environ.get(DETECTOR_ENV) or course.detector_dir())
    if not detector.is_dir():
        parser.exit(2, f"{parser.prog}: error: no detector folder at {detector}.\n{HOW_TO_MAKE_A_DETECTOR}\n")
    examples = None
    if not args.no_examples:
        examples = find_examples(course.data_dir(), cache=course.project_root() / "build" / "demo_examples")
    try:
        demo = build_demo(detector, examples=examples)
    except DetectorError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    # A gr.Error's message always reaches the page; other errors show only "Error" there (their
    # traceback goes to this terminal), so strangers never see the server's paths.
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False)
