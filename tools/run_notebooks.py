"""Execute notebooks headless with papermill, the way `make run` and `make figures` do.

    python tools/run_notebooks.py                       # every lesson, small mode
    python tools/run_notebooks.py --mode full           # the paper's sizes (needs a GPU and internet)
    python tools/run_notebooks.py notebooks/01_*.ipynb  # just these

Executed copies go to build/notebooks/, figures to figures/. Prints the wall time of each notebook and
exits non-zero if any notebook raises. It also lists what a notebook wrote to stderr beyond the course's
allow-list (tools/notebook_stderr.py; `make test` fails on it, and so does this with --fail-on-stderr),
and signs each executed copy as trusted, as JupyterLab does for a notebook you run there, so that
`make lab` shows its widget progress bars.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
import papermill
import zmq
from jupyter_client.manager import KernelManager
from nbformat.sign import NotebookNotary
from notebook_stderr import stray_stderr
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[1]


def kernel_config() -> dict:
    """papermill's keyword arguments for a kernel whose sockets are encrypted (CurveZMQ keys made by
    jupyter_client >= 8.10 for a kernelspec that declares it, as ipykernel's do). Over plain TCP,
    ipykernel >= 7.4 prints "Kernel is running over TCP without encryption ..." at every start."""
    if "transport_encryption" not in KernelManager.class_trait_names() or not zmq.has("curve"):
        return {}  # an older jupyter_client (Colab's): its kernels do not warn either
    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def run(notebook: Path, out_dir: Path, mode: str, timeout: int) -> float:
    """Execute one notebook in its own folder; return the wall time in seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(out_dir / notebook.name),
        parameters={"MODE": mode},
        cwd=str(notebook.parent),
        kernel_name="python3",
        execution_timeout=timeout,
        progress_bar=False,
        request_save_on_cell_execute=False,  # written once at the end (also on an error): ~1 s a lesson
        **kernel_config(),
    )
    seconds = time.perf_counter() - start
    # Outputs you made yourself: trusted, or JupyterLab would show widgets as their plain-text stand-ins
    # (a finished progress bar as "0%|          | 0/2").
    NotebookNotary().sign(nbformat.read(out_dir / notebook.name, as_version=4))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9]*.ipynb")
    parser.add_argument("--mode", choices=["small", "full", "auto"], default="small")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    parser.add_argument(
        "--fail-on-stderr", action="store_true", help="exit 1 on unexpected stderr too (make test-colab)"
    )
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not notebooks:
        print("no notebooks to run", file=sys.stderr)
        return 1

    times, failed, stray = {}, [], []
    for notebook in notebooks:
        print(f"running {notebook.name} ({args.mode} mode) ...", flush=True)
        start = time.perf_counter()
        try:
            times[notebook.name] = run(notebook.resolve(), args.out, args.mode, args.timeout)
            for message in stray_stderr(args.out / notebook.name):
                print(f"unexpected stderr: {message}", flush=True)
                stray.append(notebook.name)
        except papermill.PapermillExecutionError as err:
            times[notebook.name] = time.perf_counter() - start
            failed.append(notebook.name)
            print(
                f"FAILED {notebook.name}: {err.ename}: {err.evalue}\n  see {args.out / notebook.name}",
                file=sys.stderr,
            )
    print("\nwall time per notebook:")
    for name, seconds in times.items():
        print(f"  {seconds:7.1f} s  {name}{'  FAILED' if name in failed else ''}")
    print(f"  {sum(times.values()):7.1f} s  total")
    return 1 if failed or (args.fail_on_stderr and stray) else 0


if __name__ == "__main__":
    sys.exit(main())
