"""Full mode on a real GPU, against the rehearsal's stand-ins: wall time, peak GPU memory and the
precision used, per lesson, in one run of about six minutes (issue 11, item 8).

Run it once from the repository root on a machine with a CUDA GPU and no internet:

    python tools/gpu_rehearsal.py --wheels .whl --out "$OUT"

What it does:

1. Installs every wheel in ``--wheels`` (papermill, ipykernel and their dependencies for this Python;
   torchinfo and gradio if present) with ``pip --no-index --no-deps --target``, so nothing is fetched
   and the machine's own torch stays. The course's ``helpers`` come from a ``fake_vit_course-*.whl``
   there when there is one, else from a wheel built from this tree (needs setuptools >= 77).
2. Writes the stand-ins of ``tools/rehearse.py``: a ``train.zip`` of ``--fakes`` PNG fakes and
   ``--photos`` multi-megapixel JPEG photos, served by the local Hub, and random ViT-B/16 weights
   under the published name (announced as NOT THE PUBLISHED WEIGHTS by the lessons).
3. Runs lessons 04, 05, 06 and 03 (03 last: it trains longest) with ``MODE=full`` at the lessons' own
   sizes (224 px, ViT-B/16) but the epochs in ``SIZES``, each in a fresh runtime, sharing one home,
   until ``--deadline`` seconds have passed (later lessons are then skipped and reported as such).
4. Per lesson, records the wall time, the slowest cells, the precision the lesson chose and the peak
   memory: ``torch.cuda.max_memory_allocated`` from a cell appended to the runner's copy of the lesson
   (``rehearsal/gpu.py``; missing when the lesson stopped early) and the GPU's memory.used polled with
   ``nvidia-smi`` (the CUDA context included). ``$OUT/gpu_report.json`` is rewritten after every lesson,
   so a run cut short still reports; executed notebooks and logs go to ``$OUT/notebooks``.

On a machine without a GPU, ``--tiny`` runs the same steps at the rehearsal's small sizes (a check of
this script, not a measurement): ``python tools/gpu_rehearsal.py --tiny --out /tmp/gpu-check``.

The wheels, made on a machine with internet (Python 3.12 on the GPU machine, x86-64 Linux)::

    pip download --dest .whl --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \\
        --platform manylinux_2_28_x86_64 papermill ipykernel torchinfo
    pip wheel --no-deps --no-build-isolation -w .whl .      # the course's helpers
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from rehearsal import gpu, runtime
from rehearsal.fake_hub import FakeHub
from rehearsal.sizes import CPU_SIZES

ROOT = runtime.ROOT
NOTEBOOKS = ROOT / "notebooks"
ORDER = ["04_fine_tuning", "05_evaluation_and_interpretation", "06_deployment", "03_training_from_scratch"]
# Full mode's sizes except the epochs, so that four lessons fit about six minutes on one GPU.
SIZES: dict[str, dict] = {
    "04_fine_tuning": {"OVERRIDES": {"FINETUNE_EPOCHS": 2}},
    "05_evaluation_and_interpretation": {},
    "06_deployment": {},
    "03_training_from_scratch": {"OVERRIDES": {"COMPARE_EPOCHS": 2, "EPOCHS": 10}},
}
# --tiny: the CPU rehearsal's sizes (tools/rehearse.py), to check this script without a GPU.
TINY_SIZES = {name: CPU_SIZES[name] for name in ORDER}


def install_wheels(wheels: Path, target: Path) -> list[str]:
    """Install every wheel in ``wheels`` into ``target``, offline and as they are; return their names.

    Without pip (some GPU images lack it) a wheel is unpacked, which is what pip does for the packages
    a notebook imports (a wheel's files sit at its root; only scripts and headers are skipped).
    """
    found = sorted(wheels.glob("*.whl"))
    if found and importlib.util.find_spec("pip") is not None:
        command = [*runtime.PIP, "install", "--no-index", "--no-deps", "--target", target, *found]
        subprocess.run(command, check=True)
    else:
        for wheel in found:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
    return [path.name for path in found]


def importable(module: str, python_path: list[Path]) -> bool:
    """Whether a fresh interpreter with ``python_path`` in front can import ``module``."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(map(str, python_path))}
    done = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True)
    return done.returncode == 0


def write_report(out: Path, report: dict) -> None:
    path = out / "gpu_report.json"
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def run_lesson(
    name: str, parameters: dict, scratch: Path, home: Path, out: Path, env_args: dict, timeout: int
) -> dict:
    """One lesson in a fresh runtime; returns what it measured."""
    folder = scratch / name
    (folder / "work").mkdir(parents=True)
    copy = gpu.with_measure_cell(NOTEBOOKS / f"{name}.ipynb", folder / f"{name}.ipynb")
    executed = out / "notebooks" / f"{name}.ipynb"
    env = runtime.runtime_env(folder, home=home, **env_args)
    start = time.perf_counter()
    with gpu.GpuMemoryPoller() as poller:
        failure = runtime.execute(copy, executed, parameters, folder / "work", env, timeout)
    measured = gpu.read_measurements(executed) or {}
    return {
        "notebook": name,
        "parameters": parameters,
        "seconds": round(time.perf_counter() - start, 1),
        "failure": failure,
        "precision": measured.get("precision"),
        "peak_allocated_mib": measured.get("max_memory_allocated_mib"),
        "peak_reserved_mib": measured.get("max_memory_reserved_mib"),
        "peak_gpu_used_mib_nvidia_smi": poller.peak_mib,
        "measured": measured,
        "slowest_cells": gpu.slowest_cells(executed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "build/gpu-rehearsal")))
    parser.add_argument(
        "--wheels", type=Path, default=ROOT / ".whl", help="folder of wheels to install first"
    )
    parser.add_argument("--fakes", type=int, default=150, help="PNG fakes in the stand-in train.zip")
    parser.add_argument("--photos", type=int, default=150, help="JPEG photos in the stand-in train.zip")
    parser.add_argument("--deadline", type=int, default=420, help="seconds; later lessons are skipped")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per lesson")
    parser.add_argument("--tiny", action="store_true", help="the CPU rehearsal's sizes: check the script")
    parser.add_argument("--lesson", action="append", choices=ORDER, help="only these (default: all four)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = args.out.resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    sizes = {name: dict(values) for name, values in (TINY_SIZES if args.tiny else SIZES).items()}
    fakes, photos = (8, 8) if args.tiny else (args.fakes, args.photos)
    scratch = Path(tempfile.mkdtemp(prefix="fakevit-gpu-")).resolve()
    report: dict = {
        "tiny": args.tiny,
        "python": platform.python_version(),
        "stand_in_images": {"fakes": fakes, "photos": photos},
        "lessons": [],
    }
    try:
        tools_site = scratch / "tools-site"
        report["wheels"] = install_wheels(args.wheels, tools_site) if args.wheels.is_dir() else []
        course_wheels = sorted(tools_site.glob("fake_vit_course-*.dist-info"))
        site = scratch / "site"
        if course_wheels:
            site = tools_site  # helpers came with the wheels
        elif shutil.which("git") and (ROOT / ".git").exists():
            runtime.install_wheel(runtime.build_wheel(scratch / "wheel", scratch), site)
        else:
            raise SystemExit(
                f"no fake_vit_course-*.whl in {args.wheels} and no git checkout to build one from"
            )
        python_path = [site, tools_site] if site != tools_site else [tools_site]
        sys.path[:0] = map(str, python_path)  # the stand-ins below import helpers; papermill is needed
        report["missing_modules"] = [
            m for m in ("papermill", "ipykernel", "torchinfo", "gradio") if not importable(m, python_path)
        ]
        if {"papermill", "ipykernel"} & set(report["missing_modules"]):
            raise SystemExit(f"papermill and ipykernel are needed: put their wheels in {args.wheels}")
        if "gradio" in report["missing_modules"]:
            overrides = {**sizes["06_deployment"].get("OVERRIDES", {}), "LAUNCH_DEMO": False}
            sizes["06_deployment"] = {**sizes["06_deployment"], "OVERRIDES": overrides}
        for name, parameters in sizes.items():
            runtime.check_parameters(NOTEBOOKS / f"{name}.ipynb", {"MODE": "full", **parameters})

        from rehearsal.standins import (
            publish_standin_dataset,
            write_standin_cnn_weights,
            write_standin_vit_b16_weights,
        )

        made = time.perf_counter()
        zip_path = publish_standin_dataset(
            scratch / "hub", fakes=fakes, photos=photos, workers=os.cpu_count() or 1
        )
        weights = write_standin_vit_b16_weights(scratch / "standin-torch")
        write_standin_cnn_weights(scratch / "standin-torch")  # lesson 04's ResNet-50, also random
        report["stand_ins_seconds"] = round(time.perf_counter() - made, 1)
        report["zip_megabytes"] = round(zip_path.stat().st_size / 1e6, 1)
        print(
            f"stand-ins: {zip_path.name} {report['zip_megabytes']} MB in {report['stand_ins_seconds']} s",
            flush=True,
        )
        write_report(out, report)
        with FakeHub(scratch / "hub") as hub:
            env_args = {"python_path": python_path, "hub_url": hub.url, "weights": weights}
            for name in [n for n in ORDER if not args.lesson or n in args.lesson]:
                if time.perf_counter() - start > args.deadline:
                    report["lessons"].append({"notebook": name, "skipped": f"deadline of {args.deadline} s"})
                    continue
                parameters = {"MODE": "full", **sizes[name]}
                before = len(hub.downloads(zip_path.name))
                result = run_lesson(name, parameters, scratch, scratch / "home", out, env_args, args.timeout)
                result["zip_downloads"] = len(hub.downloads(zip_path.name)) - before
                report["lessons"].append(result)
                print(
                    json.dumps({k: result[k] for k in ("notebook", "seconds", "precision", "failure")}),
                    flush=True,
                )
                write_report(out, report)
    finally:
        report["total_seconds"] = round(time.perf_counter() - start, 1)
        write_report(out, report)
        shutil.rmtree(scratch, ignore_errors=True)
    failed = [lesson for lesson in report["lessons"] if lesson.get("failure") or lesson.get("skipped")]
    passed = len(report["lessons"]) - len(failed)
    print(f"{passed} of {len(report['lessons'])} lessons ran through; report: {out / 'gpu_report.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
