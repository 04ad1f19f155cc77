"""One table of lesson times, written into the README, each lesson's header and the workshop plan.

    python tools/lesson_times.py           # write the table everywhere it appears
    python tools/lesson_times.py --check   # exit 1 if any copy differs (`make lint` runs this)

``TIMES`` below is the only place to edit. "run" is small mode on 2 CPU cores, measured by
``make run`` (tools/run_notebooks.py prints each lesson's wall time); "colab" is full mode on a Colab
GPU, an estimate until someone measures it; "study" is reading plus the your-turn cells, and
"exercises" the exercises at the end (the solutions notebook's header says the same), both estimates.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURED_ON = "make run on a fresh clone, 2 AMD EPYC cores (AVX2), 2026-12-07"

# lesson: (study minutes, exercise minutes, small-mode run in seconds (measured), Colab full mode)
TIMES: dict[str, tuple[int, int, int, str]] = {
    "01_patch_embeddings": (25, 20, 9, "under 1 min"),
    "02_vit_blocks": (45, 30, 10, "1-2 min"),
    "03_training_from_scratch": (40, 20, 107, "30-60 min"),
    "04_fine_tuning": (35, 30, 25, "30-60 min, with the first download"),
    "05_evaluation_and_interpretation": (35, 40, 25, "5-10 min"),
    "06_deployment": (25, 30, 11, "2-5 min"),
}
START, END = "<!-- lesson-times:start -->", "<!-- lesson-times:end -->"
TABLE_FILES = (ROOT / "README.md", ROOT / "docs" / "workshop.md")
HEADER = re.compile(r"^\*\*Time:\*\*.*?(?=\n\n|\Z)", re.S | re.M)  # the paragraph that starts "**Time:**"


def header_line(lesson: str) -> str:
    study, exercises, run, colab = TIMES[lesson]
    return (
        f"**Time:** about {study} min to study, plus {exercises} min for the exercises. Small mode runs in "
        f"{run} s on 2 CPU cores (measured); full mode on a Colab GPU takes {colab} (estimate)."
    )


def table() -> str:
    rows = [
        "| Lesson | Study (estimate) | Exercises (estimate) | Small mode, 2 CPU cores (measured) "
        "| Full mode, Colab GPU (estimate) |",
        "|---|---|---|---|---|",
    ]
    for lesson, (study, exercises, run, colab) in TIMES.items():
        rows.append(f"| {lesson[:2]} | {study} min | {exercises} min | {run} s | {colab} |")
    total = sum(t[2] for t in TIMES.values())
    rows.append(f"\nSmall mode in all: {total} s ({MEASURED_ON}). Colab times are estimates, not measured.")
    return "\n".join([START, *rows, END])


def with_table(text: str, path: Path) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no {START} ... {END} block for the lesson times")
    head, rest = text.split(START, 1)
    return head + table() + rest.split(END, 1)[1]


def solutions_line(lesson: str) -> str:
    return f"**Time:** about {TIMES[lesson][1]} min to attempt the exercises."


def with_header(notebook: dict, line: str) -> dict:
    """``notebook`` with ``line`` as its title cell's "**Time:**" paragraph (added after the title)."""
    index = next(i for i, c in enumerate(notebook["cells"]) if "".join(c["source"]).startswith("# "))
    cell = notebook["cells"][index]
    source = "".join(cell["source"])
    if HEADER.search(source):
        source = HEADER.sub(lambda _: line, source, count=1)
    else:
        title, _, body = source.partition("\n")
        source = f"{title}\n\n{line}\n{body}"
    cell["source"] = source.splitlines(keepends=True)
    return notebook


def with_agenda(text: str) -> str:
    """The full-day agenda's "**0N** lesson (X min) + exercises (Y min)" from ``TIMES``."""
    for lesson, (study, exercises, _, _) in TIMES.items():
        text = re.sub(
            rf"\*\*{lesson[:2]}\*\* lesson \(\d+ min\) \+ exercises \(\d+ min\)",
            f"**{lesson[:2]}** lesson ({study} min) + exercises ({exercises} min)",
            text,
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a copy differs")
    args = parser.parse_args(argv)
    stale = []
    for path in TABLE_FILES:
        text = path.read_text(encoding="utf-8")
        new = with_table(text, path)
        new = with_agenda(new) if path.name == "workshop.md" else new
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    notebooks = [(ROOT / "notebooks" / f"{lesson}.ipynb", header_line(lesson)) for lesson in TIMES]
    notebooks += [
        (ROOT / "notebooks" / "solutions" / f"{lesson}_solutions.ipynb", solutions_line(lesson))
        for lesson in TIMES
    ]
    for path, line in notebooks:
        text = path.read_text(encoding="utf-8")
        new = json.dumps(with_header(json.loads(text), line), indent=1, ensure_ascii=False) + "\n"
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if stale and args.check:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(
            f"lesson times differ from tools/lesson_times.py in: {names}; run `python tools/lesson_times.py`"
        )
        return 1
    print(("updated " + ", ".join(p.name for p in stale)) if stale else "lesson times agree everywhere")
    return 0


if __name__ == "__main__":
    sys.exit(main())
