"""Write (or check) the lesson -> helpers map in ``helpers/__init__.py``, read from the notebooks.

    python tools/lesson_map.py          rewrite the table between the markers
    python tools/lesson_map.py --check  exit 1 if the table is not what the notebooks import (make lint)

For every lesson (notebooks/NN_*.ipynb) it lists each helpers module the lesson imports and the names it
takes from it or calls on it, so the map a learner reads is generated, and ``make lint`` runs ``--check``
so that it cannot drift from the notebooks.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "helpers" / "__init__.py"
BEGIN, END = "    lesson", "\n\n"  # the table starts at its header and ends at the first blank line


def lesson_uses(notebook: Path) -> dict[str, set[str]]:
    """``{"helpers.train.loop": {"fit", "set_seed"}, ...}``: what one notebook imports from helpers."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = "\n".join(
        "".join(c["source"])
        for c in cells
        if c["cell_type"] == "code" and not "".join(c["source"]).startswith("%")
    )
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("!", "%")))
    tree = ast.parse(code)
    uses: dict[str, set[str]] = defaultdict(set)
    modules: dict[str, str] = {}  # local name -> module, for `from helpers.train import loop`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if (ROOT / (full.replace(".", "/") + ".py")).is_file():
                    modules[alias.asname or alias.name] = full
                    uses[full]  # a module imported whole: its attributes are found below
                else:
                    uses[node.module].add(alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            uses[modules[node.value.id]].add(node.attr)
    return uses


def lesson_map() -> dict[str, dict[str, set[str]]]:
    """``{"03": {"helpers.train.loop": {...}}, ...}`` for every lesson notebook."""
    found = {}
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        found[notebook.name[:2]] = lesson_uses(notebook)
    return found


def spans(lessons: list[str]) -> str:
    """``["01", "02", "03", "05"]`` -> ``"01-03,05"``."""
    numbers, parts = [int(n) for n in lessons], []
    for n in numbers:
        if parts and n == parts[-1][1] + 1:
            parts[-1][1] = n
        else:
            parts.append([n, n])
    return ",".join(f"{a:02d}" if a == b else f"{a:02d}-{b:02d}" for a, b in parts)


def table() -> str:
    by_module: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for lesson, uses in lesson_map().items():
        for module, names in uses.items():
            by_module[module][lesson] |= names
    lines = ["    lessons   module                  what the lessons use from it"]
    order = sorted(by_module, key=lambda m: (min(by_module[m]), m))
    for module in order:
        lessons = spans(sorted(by_module[module]))
        names = sorted(set().union(*by_module[module].values()))
        shown = (
            ", ".join(names)
            if len(", ".join(names)) <= 60
            else ", ".join(names)[:57].rsplit(", ", 1)[0] + ", ..."
        )
        lines.append(f"    {lessons:<9} {module.removeprefix('helpers.'):<23} {shown}".rstrip())
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = INIT.read_text(encoding="utf-8")
    start = text.index(BEGIN)
    end = text.index(END, start)
    new = text[:start] + table() + text[end:]
    if "--check" in argv:
        if new != text:
            print(f"{INIT.relative_to(ROOT)}: the lesson map is out of date; run python tools/lesson_map.py")
            return 1
        return 0
    INIT.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
