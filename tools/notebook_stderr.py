"""Find what an executed notebook writes to stderr: the red output a learner reads as "something broke".

Every lesson and solution should write to stderr only what the course means to say there. This module
holds the short list of what it means to say (``ALLOWED``: a pattern and the reason for each) and
reports everything else. Two callers share it, so it runs no notebook itself:

- the repository's ``conftest.py``: nbval runs each code cell as a test item; after a cell runs, the
  hook passes the outputs nbval collected to :func:`unexpected_stderr`, and the cell fails on any;
- ``tools/rehearse.py`` (and ``tools/run_notebooks.py``): :func:`stray_stderr` on each executed copy.

    python tools/notebook_stderr.py build/notebooks/*.ipynb    # exit 1 if any unexpected stderr

Stderr is a ``stream`` output named ``stderr`` (warnings, text progress bars, logging) or rich output
of type ``application/vnd.jupyter.stderr``. Widget progress bars (tqdm with ipywidgets) are not stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# (pattern, why the course means it). A pattern is matched against a cell's whole stderr text
# (re.MULTILINE, so ^ and $ are line ends), and what it matches is removed before looking for more.
ALLOWED: list[tuple[str, str]] = [
    (
        r"^.*UserWarning: Skipped \d+ undecodable file\(s\).*\n(?:[ \t]+.*\n?)*",
        "helpers.data.datasets (indexing) and helpers.data.fake_or_real (the resized copy) skip a corrupt "
        "image with one warning naming it, instead of crashing mid-epoch; the real dataset may hold one (the "
        "warning's indented lines list the files)",
    ),
]

STDERR_MIME = "application/vnd.jupyter.stderr"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_LINES_PER_CELL = 5  # a text progress bar repeats itself; the first few of its lines say enough


def stderr_text(outputs: list[dict]) -> str:
    """All stderr in one cell's outputs (nbformat dicts, or nbval's), joined, colour codes removed."""
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            parts.append(output.get("text", ""))
        elif STDERR_MIME in output.get("data", {}):
            parts.append(output["data"][STDERR_MIME])
    text = "".join("".join(part) if isinstance(part, list) else part for part in parts)
    return ANSI_ESCAPE.sub("", text)


def unexpected_stderr(outputs: list[dict], allowed: list[tuple[str, str]] = ALLOWED) -> list[str]:
    """The stderr lines of one cell's outputs that no ``allowed`` pattern explains ([] when clean).

    A carriage return starts a new line, as it does on screen for a text progress bar. A stderr output
    of only blanks (what such a bar leaves when it clears itself) is reported too: it still shows as an
    empty red box.
    """
    text = stderr_text(outputs)
    if not text:
        return []
    remaining = text
    for pattern, _reason in allowed:
        remaining = re.sub(pattern, "", remaining, flags=re.MULTILINE)
    lines = [line.rstrip() for line in re.split(r"[\r\n]", remaining) if line.strip()]
    if not lines and remaining == text:  # blanks only, and no allowed message among them
        return [f"(blank stderr output {text[:40]!r})"]
    unique = list(dict.fromkeys(lines))  # keep the order, drop repeats
    if len(unique) > MAX_LINES_PER_CELL:
        unique = unique[:MAX_LINES_PER_CELL] + [f"... and {len(unique) - MAX_LINES_PER_CELL} more lines"]
    return unique


def stray_stderr(notebook: Path | dict, allowed: list[tuple[str, str]] = ALLOWED) -> list[str]:
    """One message per code cell of an executed notebook (a path or its JSON) with unexpected stderr.

    Each message names the code cell as nbval does (``Cell N``, counting code cells from 0), quotes the
    first line of its source and lists the lines. Use it on executed copies, e.g. ``tools/rehearse.py``::

        problems += stray_stderr(executed_path)
    """
    name = Path(notebook).name if isinstance(notebook, Path | str) else "notebook"
    if isinstance(notebook, Path | str):
        notebook = json.loads(Path(notebook).read_text(encoding="utf-8"))
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    messages = []
    for number, cell in enumerate(code_cells):
        lines = unexpected_stderr(cell.get("outputs", []), allowed)
        if lines:
            source = "".join(cell["source"]).strip().splitlines() or [""]
            shown = "\n".join(f"    {line}" for line in lines)
            messages.append(f"{name} Cell {number} (`{source[0][:60]}`) writes to stderr:\n{shown}")
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebooks", nargs="+", type=Path, help="executed notebooks (with outputs)")
    args = parser.parse_args(argv)
    messages = [message for path in args.notebooks for message in stray_stderr(path)]
    for message in messages:
        print(message)
    if messages:
        print(
            f"\n{len(messages)} cell(s) write to stderr what the course does not mean to say. Fix the cause "
            "(or, if a learner should see it, add a pattern and its reason to ALLOWED in "
            "tools/notebook_stderr.py)."
        )
        return 1
    print(f"no unexpected stderr in {len(args.notebooks)} notebook(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
