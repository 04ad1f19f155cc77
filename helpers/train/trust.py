"""Four checks before trusting a fake-image detector (lesson 05): 1. shortcut audit (can the file alone
tell the classes?), 2. uncertainty (intervals), 3. operating point (threshold, base rate, calibration),
4. leak check. Probabilities are (N, 2) in ``CLASS_NAMES`` order (0 = fake, the positive class)."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torchmetrics.functional.classification import binary_auroc, binary_calibration_error, binary_f1_score

from helpers.data.datasets import CLASS_NAMES
from helpers.data.images import load_image_rgb
from helpers.train.evaluation import compute_metrics

FAKE = CLASS_NAMES.index("fake_images")  # 0: the positive class, as in compute_metrics
PathLike = str | os.PathLike
Samples = Sequence[tuple[PathLike, int]]  # (path, label) pairs, as find_images returns them

# 1. Shortcut audit ----------------------------------------------------------------------------------

# The JPEG standard's example luminance table (ITU T.81, Annex K), which libjpeg scales by the quality.
STANDARD_LUMINANCE_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
METADATA_FEATURES = ("log width", "log height", "log bytes", "is JPEG", "is PNG", "JPEG quality", "EXIF")


def estimate_jpeg_quality(quantization: dict[int, Sequence[int]]) -> int | None:
    """The libjpeg quality (1-100) nearest Pillow's ``image.quantization`` table 0, else None. Lesson 05."""
    table = np.asarray(quantization.get(0, ()))
    if table.shape != (64,):
        return None
    scales = [5000 // quality if quality < 50 else 200 - 2 * quality for quality in range(1, 101)]  # percent
    tables = [np.clip((np.array(STANDARD_LUMINANCE_TABLE) * scale + 50) // 100, 1, 255) for scale in scales]
    return int(np.argmin([np.abs(scaled - table).sum() for scaled in tables])) + 1


def image_metadata(path: PathLike) -> dict[str, Any]:
    """What the original file's header says: width, height, format, jpeg_quality, bytes, exif. Lesson 05."""
    with Image.open(path) as image:
        is_jpeg = image.format in ("JPEG", "MPO")  # MPO: a camera's JPEG holding more than one picture
        return {
            "width": image.width,
            "height": image.height,
            "format": "JPEG" if is_jpeg else image.format,
            "jpeg_quality": estimate_jpeg_quality(image.quantization) if is_jpeg else None,
            "bytes": Path(path).stat().st_size,
            "exif": len(image.getexif()) > 0,
        }


def metadata_table(samples: Samples, class_names: Sequence[str] = CLASS_NAMES) -> list[dict[str, Any]]:
    """One row per class summarising its files' :func:`image_metadata` (min/max per dimension). Lesson 05."""
    found = [(image_metadata(path), label) for path, label in samples]
    rows = []
    for label, name in enumerate(class_names):
        files = [meta for meta, file_label in found if file_label == label]
        if not files:
            continue
        widths, heights = [m["width"] for m in files], [m["height"] for m in files]
        qualities = [m["jpeg_quality"] for m in files if m["jpeg_quality"] is not None]
        formats = Counter(m["format"] for m in files)
        rows.append(
            {
                "class": name,
                "images": len(files),
                "median size": f"{median(widths):g}x{median(heights):g}",
                "smallest": f"{min(widths)}x{min(heights)}",
                "largest": f"{max(widths)}x{max(heights)}",
                "formats": ", ".join(f"{fmt} {count}" for fmt, count in formats.most_common()),
                "median JPEG quality": median(qualities) if qualities else None,
                "median kB": round(median(m["bytes"] for m in files) / 1000, 1),
                "with EXIF": round(sum(m["exif"] for m in files) / len(files), 3),
            }
        )
    return rows


def metadata_features(meta: dict[str, Any]) -> list[float]:
    """The numbers :func:`metadata_baseline` learns from, named in :data:`METADATA_FEATURES`. Lesson 05."""
    sizes = [math.log(max(meta[key], 1)) for key in ("width", "height", "bytes")]
    is_jpeg, is_png = float(meta["format"] == "JPEG"), float(meta["format"] == "PNG")
    return [*sizes, is_jpeg, is_png, (meta["jpeg_quality"] or 0) / 100, float(meta["exif"])]


def metadata_baseline(train_samples: Samples, test_samples: Samples) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression on :func:`metadata_features`, blind to pixels: test probs (N, 2), targets (N,).

    Well above chance means the files alone give the label away. Lesson 05."""
    from sklearn.linear_model import LogisticRegression  # only this function needs sklearn
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(samples):
        x = np.array([metadata_features(image_metadata(path)) for path, _ in samples])
        return x, np.array([label for _, label in samples])

    x_train, y_train = features(train_samples)
    if len(set(y_train)) != len(CLASS_NAMES):
        raise ValueError(f"train_samples must hold every class of {CLASS_NAMES}")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x_train, y_train)
    x_test, y_test = features(test_samples)
    probs = model.predict_proba(x_test)  # (N, 2), columns in label order 0, 1
    return torch.from_numpy(probs).float(), torch.from_numpy(y_test).long()


def write_equalised_copy(
    samples: Samples, out_root: PathLike, size: int = 256, quality: int = 90
) -> list[tuple[Path, int]]:
    """Every image saved alike: a centred square of ``size`` pixels, JPEG at ``quality``, no EXIF, to
    ``out_root/<class>/<name>.jpg``; returns the new samples. Lesson 05."""
    written = []
    for path, label in samples:
        out = Path(out_root) / CLASS_NAMES[label] / f"{Path(path).stem}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        square = ImageOps.fit(load_image_rgb(path), (size, size), Image.Resampling.LANCZOS)
        square.save(out, format="JPEG", quality=quality, subsampling="4:2:0")  # no EXIF is written
        written.append((out, label))
    return written


# 2. Uncertainty ---------------------------------------------------------------------------------------

PERCENT_METRICS = ("accuracy", "precision", "recall", "f1")  # rates, written in percent
Metric = str | Callable[[torch.Tensor, torch.Tensor], float | None]


def _auroc(probs: torch.Tensor, targets: torch.Tensor) -> float | None:
    is_fake = (targets == FAKE).long()
    return (
        binary_auroc(probs[:, FAKE], is_fake, validate_args=False).item()
        if is_fake.unique().numel() == 2
        else None
    )


# compute_metrics' two-class metrics one at a time, checks skipped: an interval computes each 1,000 times.
_TWO_CLASS = {
    "accuracy": lambda probs, targets: (probs.argmax(dim=1) == targets).float().mean().item(),
    "f1": lambda probs, targets: binary_f1_score(
        (probs.argmax(dim=1) == FAKE).long(), (targets == FAKE).long(), validate_args=False
    ).item(),
    "auroc": _auroc,
}


def _score(metric: Metric, probs: torch.Tensor, targets: torch.Tensor) -> float | None:
    """``metric`` on these images: a key of :func:`compute_metrics` or a function; None if undefined."""
    if callable(metric):
        return metric(probs, targets)
    if probs.shape[1] == 2 and metric in _TWO_CLASS:
        return _TWO_CLASS[metric](probs, targets)
    return compute_metrics(probs, targets, positive_class=FAKE)[metric]


def _bootstrap(statistics: Callable, n: int, n_boot: int, seed: int, level: float) -> dict[str, dict]:
    """Percentile bootstrap over ``n`` images of ``statistics(indices) -> {name: value or None}``."""
    values = statistics(torch.arange(n))
    generator = torch.Generator().manual_seed(seed)
    draws: dict[str, list[float]] = {name: [] for name in values}
    for _ in range(n_boot):
        resample = statistics(torch.randint(n, (n,), generator=generator))  # drawn with replacement
        for name, value in resample.items():
            if value is not None:  # e.g. AUROC on a resample that holds one class only
                draws[name].append(value)
    results = {}
    for name, value in values.items():
        if value is None or len(draws[name]) < n_boot / 2:
            raise ValueError(f"{name} is undefined on these images or most resamples (one class only?)")
        low, high = np.quantile(draws[name], [(1 - level) / 2, (1 + level) / 2])
        results[name] = {"metric": name, "value": value, "low": float(low), "high": float(high),
                         "level": level, "n": n, "skipped": n_boot - len(draws[name])}  # fmt: skip
    return results


def _name_of(metric: Metric) -> str:
    return metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")


def bootstrap_interval(
    probs: torch.Tensor, targets: torch.Tensor, metric: Metric = "accuracy",
    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict[str, Any]:  # fmt: skip
    """A seeded percentile-bootstrap interval for ``metric`` (a :func:`compute_metrics` key or a function
    ``(probs, targets) -> float``): ``{"metric", "value", "low", "high", "level", "n", "skipped"}``.
    Lesson 05."""
    name = _name_of(metric)
    return _bootstrap(
        lambda i: {name: _score(metric, probs[i], targets[i])}, len(targets), n_boot, seed, level
    )[name]


def paired_bootstrap_difference(
    probs_a: torch.Tensor, probs_b: torch.Tensor, targets: torch.Tensor, metric: Metric = "accuracy",
    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict[str, Any]:  # fmt: skip
    """An interval for ``metric(a) - metric(b)`` on the same resampled images, where the luck of the draw
    cancels; as :func:`bootstrap_interval`, plus ``"difference": True``. Lesson 05."""
    name = _name_of(metric)

    def difference(i: torch.Tensor) -> dict[str, float | None]:
        a, b = _score(metric, probs_a[i], targets[i]), _score(metric, probs_b[i], targets[i])
        return {name: None if a is None or b is None else a - b}

    return {**_bootstrap(difference, len(targets), n_boot, seed, level)[name], "difference": True}


def format_interval(result: dict[str, Any]) -> str:
    """E.g. ``84.7 % (95 % CI 79.5-89.5 %, n = 200)`` for a rate, ``0.912 (95 % CI 0.87-0.95, n = 200)``
    for AUROC, ``+3.5 points (95 % CI -1.0 to +8.0 points, n = 200)`` for a difference of rates."""
    difference, percent = result.get("difference", False), result["metric"] in PERCENT_METRICS
    scale, digits, unit = (100, 1, " points" if difference else " %") if percent else (1, 2, "")
    sign = "+" if difference else ""
    value = f"{result['value'] * scale:{sign}.{1 if percent else 3}f}"
    low, high = (f"{result[key] * scale:{sign}.{digits}f}" for key in ("low", "high"))
    interval = f"{low} to {high}" if difference else f"{low}-{high}"
    return f"{value}{unit} ({result['level'] * 100:g} % CI {interval}{unit}, n = {result['n']})"


def metric_intervals(
    probs: torch.Tensor, targets: torch.Tensor, metrics: Sequence[str] = ("accuracy", "f1", "auroc"),
    n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """:func:`bootstrap_interval` for each of ``metrics``, all from the same resampled test sets:
    ``{metric: interval}``. Lessons 03 to 06, the CLI."""
    probs, targets = probs.float().cpu(), targets.long().cpu()
    return _bootstrap(
        lambda i: {m: _score(m, probs[i], targets[i]) for m in metrics}, len(targets), n_boot, seed, level
    )


def format_metric_intervals(intervals: dict[str, dict[str, Any]]) -> str:
    """One line per metric, e.g. ``accuracy  84.7 % (95 % CI 79.5-89.5 %, n = 200)``."""
    return "\n".join(f"{name:<9} {format_interval(result)}" for name, result in intervals.items())


# 3. Operating point -----------------------------------------------------------------------------------


def fake_scores(probs: torch.Tensor) -> torch.Tensor:
    """P(fake) for each image: column ``FAKE`` of (N, 2); a (N,) tensor is P(fake) already. Lesson 05."""
    return probs[:, FAKE] if probs.ndim == 2 else probs


def threshold_for_fpr(
    val_probs_fake: torch.Tensor, val_targets: torch.Tensor, target_fpr: float = 0.01
) -> float:
    """The lowest threshold flagging (scores *above* it) at most ``floor(target_fpr * R)`` of the R real
    validation photos (1 % of 50 flags none); test it with :func:`rates_at_threshold`. Lesson 05."""
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    real = fake_scores(val_probs_fake)[val_targets != FAKE].sort(descending=True).values
    if len(real) == 0:
        raise ValueError("the validation set has no real photos to choose a threshold on")
    allowed = math.floor(target_fpr * len(real) + 1e-9)  # real photos that may be flagged
    return float(real[allowed])


def rates_at_threshold(probs: torch.Tensor, targets: torch.Tensor, threshold: float) -> dict[str, Any]:
    """``{"tpr", "fpr", "n_fake", "n_real"}`` flagging scores above ``threshold``: TPR = fakes caught,
    FPR = real photos flagged (false alarms). Lesson 05."""
    flagged, is_fake = fake_scores(probs) > threshold, targets == FAKE
    n_fake, n_real = int(is_fake.sum()), int((~is_fake).sum())
    tpr = float((flagged & is_fake).sum()) / n_fake if n_fake else math.nan
    fpr = float((flagged & ~is_fake).sum()) / n_real if n_real else math.nan
    return {"tpr": tpr, "fpr": fpr, "n_fake": n_fake, "n_real": n_real}


def precision_at_base_rate(tpr: float, fpr: float, base_rate: float) -> float:
    """The fraction of flags that are fake when ``base_rate`` of all images are (Bayes' rule; NaN if
    nothing is flagged): 1 % fakes, TPR 0.9 and FPR 0.05 give 15 %. Lesson 05."""
    flagged = tpr * base_rate + fpr * (1 - base_rate)
    return tpr * base_rate / flagged if flagged > 0 else math.nan


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    """The gap between P(fake) and the fraction of fakes over ``n_bins`` bins (0 = calibrated). Lesson 05."""
    scores, is_fake = fake_scores(probs).float().contiguous(), (targets == FAKE).long()
    return binary_calibration_error(scores, is_fake, n_bins=n_bins).item()


def reliability_bins(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 10) -> list[dict[str, float]]:
    """A reliability diagram's points: per non-empty bin of P(fake), ``mean_score``, ``fraction_fake``
    and ``count``. A calibrated detector's lie on the diagonal. Lesson 05."""
    scores, is_fake = fake_scores(probs).float(), (targets == FAKE).float()
    bins = (scores * n_bins).long().clamp(0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            mean_score, fraction_fake = scores[inside].mean().item(), is_fake[inside].mean().item()
            rows.append(dict(low=b / n_bins, high=(b + 1) / n_bins, count=int(inside.sum()),
                             mean_score=mean_score, fraction_fake=fraction_fake))  # fmt: skip
    return rows


def fit_temperature(val_logits: torch.Tensor, val_targets: torch.Tensor) -> float:
    """The T in 0.05-20 (401, log-spaced) whose ``softmax(logits / T)`` has the lowest validation
    cross-entropy; T > 1 softens an over-confident model (``probs.log()`` may stand in). Lesson 05."""
    logits, targets = val_logits.detach().float(), val_targets.long()
    temperatures = torch.logspace(math.log10(0.05), math.log10(20), 401)
    losses = torch.stack([F.cross_entropy(logits / t, targets) for t in temperatures])
    return float(temperatures[losses.argmin()])


# 4. Leak check ----------------------------------------------------------------------------------------


def _name(path: PathLike, root: PathLike | None) -> str:
    """The name a file is compared by: relative to ``root``, else ``<class folder>/<file name>``."""
    path = Path(path)
    return path.relative_to(root).as_posix() if root is not None else "/".join(path.parts[-2:])


def split_digest(paths: Iterable[PathLike], root: PathLike | None = None) -> str:
    """A split's fingerprint: the sha256 of its sorted file names, the same on any machine. Lesson 05."""
    names = sorted(_name(path, root) for path in paths)
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


def check_disjoint(
    train_paths: Iterable[PathLike], eval_paths: Iterable[PathLike], root: PathLike | None = None
) -> None:
    """Raise ValueError if any evaluation file was also a training file (by :func:`_name`). Lesson 05."""
    overlap = sorted({_name(p, root) for p in train_paths} & {_name(p, root) for p in eval_paths})
    if overlap:
        shown = ", ".join(overlap[:5]) + (", ..." if len(overlap) > 5 else "")
        raise ValueError(
            f"{len(overlap)} evaluation file(s) were also training files ({shown}): a score on them "
            "measures memory, not detection. Evaluate on images the model never trained on."
        )
