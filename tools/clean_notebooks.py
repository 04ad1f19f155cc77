"""Strip notebook outputs before committing, keeping only the outputs that CI checks.

A code cell whose source contains ``# NBVAL_CHECK_OUTPUT`` (or that is tagged ``nbval-check-output``)
keeps its outputs: nbval compares them when `make test` runs the notebook. Every other output, every
execution count and papermill's run metadata are removed, and the kernel is named "python3" again (the
name Colab knows; `make lab` opens such notebooks on the course's kernel).

    python tools/clean_notebooks.py notebooks/*.ipynb            # strip in place
    python tools/clean_notebooks.py --from-executed build/notebooks notebooks/*.ipynb
        # first copy the checked cells' outputs from executed copies of the same name
    python tools/clean_notebooks.py --check notebooks/*.ipynb    # exit 1 if a file would change
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
CHECK_TAG = "nbval-check-output"
# The kernel a committed notebook names. `make lab` runs the course's kernel ("fake-vit") and JupyterLab
# writes its name into a notebook it saves; Colab would greet that name with "Unrecognized runtime".
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def is_checked(cell: dict) -> bool:
    source = "".join(cell.get("source", ""))
    return CHECK_MARK in source or CHECK_TAG in cell.get("metadata", {}).get("tags", [])


def cleaned(notebook: dict, executed: dict | None = None) -> dict:
    """The notebook with only checked outputs, taken from ``executed`` when given (matched by source)."""
    executed_outputs = {}
    if executed is not None:
        for cell in executed["cells"]:
            if cell["cell_type"] == "code" and is_checked(cell):
                executed_outputs["".join(cell["source"])] = cell.get("outputs", [])
    code_cells = 0
    for cell in notebook["cells"]:
        metadata = cell.get("metadata", {})
        for key in ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled"):
            metadata.pop(key, None)
        if cell["cell_type"] != "code":
            continue
        code_cells += 1
        if not is_checked(cell):
            cell["execution_count"] = None
            cell["outputs"] = []
            continue
        source = "".join(cell["source"])
        if source in executed_outputs:
            cell["outputs"] = executed_outputs[source]
        # nbval refuses a cell with outputs but no execution count: number it by its position.
        cell["execution_count"] = code_cells
        for output in cell.get("outputs", []):
            if "execution_count" in output:
                output["execution_count"] = code_cells
            output.get("metadata", {}).clear()
    notebook["metadata"].pop("papermill", None)
    notebook["metadata"].pop("widgets", None)
    notebook["metadata"]["kernelspec"] = dict(KERNELSPEC)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument(
        "--from-executed", type=Path, help="folder of executed copies with the same file names"
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = parser.parse_args(argv)
    stale = []
    for path in args.notebooks:
        text = path.read_text(encoding="utf-8")
        executed = None
        if args.from_executed:
            executed_path = args.from_executed / path.name
            if not executed_path.exists():
                raise SystemExit(f"{executed_path} not found: execute {path} first (`make run`)")
            executed = json.loads(executed_path.read_text(encoding="utf-8"))
        new = json.dumps(cleaned(json.loads(text), executed), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in stale:
        print(("would clean " if args.check else "cleaned ") + str(path))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
