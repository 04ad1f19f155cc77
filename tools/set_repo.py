"""Point every Open-in-Colab badge and Colab set-up cell at the repository and ref in pyproject.toml.

The public repository and the git ref (branch, tag or commit) that Colab opens and installs are
named in exactly one place, ``[tool.fakevit]`` in pyproject.toml. The notebooks' first cells and the
README's badges are generated from them:

    python tools/set_repo.py                         # rewrite from pyproject.toml
    python tools/set_repo.py --repo you/your-fork    # record a fork in pyproject.toml, then rewrite
    python tools/set_repo.py --ref v1.0              # record a ref (a release tag), then rewrite
    python tools/set_repo.py --check                 # exit 1 if anything is out of date (make lint)

In a notebook, the badge is the markdown cell tagged ``colab-badge`` and the set-up is the code cell
tagged ``colab-setup``. The set-up cell installs the ``helpers`` package at that ref, with only the
extras that lesson needs (:data:`EXTRAS`), and shows pip's output only when pip fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
REF_PATTERN = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")  # a branch, tag or commit: no spaces, no @
# pyproject extras that a notebook's set-up cell installs, by notebook file name; others get none.
EXTRAS = {"06_deployment.ipynb": "demo"}  # gradio, for the demo
BADGE_URL = re.compile(r"https://colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/[^/\s]+/")

SETUP_TEMPLATE = """\
# Colab set-up: install the course's `helpers` package from GitHub. Colab already has torch
# and torchvision, and this leaves them as they are. Anywhere else this cell does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    package = "fake-vit-course{extras} @ git+https://github.com/{repo}@{ref}"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", package], capture_output=True, text=True)
    if pip.returncode != 0:
        print(pip.stdout, pip.stderr, sep="\\n")
        raise RuntimeError(f"pip could not install {{package}}; its messages are above")
    print(f"Installed {{package}}")"""


def read_settings() -> tuple[str, str]:
    """``(repo, ref)`` from pyproject.toml's ``[tool.fakevit]``."""
    settings = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["fakevit"]
    return settings["repo"], settings["ref"]


def write_setting(key: str, value: str, pattern: re.Pattern, what: str) -> None:
    """Record ``key = "value"`` in pyproject.toml's ``[tool.fakevit]``."""
    if not pattern.match(value):
        raise SystemExit(f"--{key} must look like {what}, got {value!r}")
    text = PYPROJECT.read_text(encoding="utf-8")
    new, found = re.subn(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text, count=1)
    if not found:
        raise SystemExit(f'{PYPROJECT} has no line {key} = "..." under [tool.fakevit]')
    PYPROJECT.write_text(new, encoding="utf-8")


def badge(repo: str, ref: str, notebook: Path) -> str:
    relative = notebook.relative_to(ROOT).as_posix()
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{repo}/blob/{ref}/{relative})"
    )


def as_source(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def setup_cell(repo: str, ref: str, notebook_name: str) -> str:
    """The Colab set-up cell of notebook ``notebook_name``: installs the package with its extras."""
    extras = f"[{EXTRAS[notebook_name]}]" if notebook_name in EXTRAS else ""
    return SETUP_TEMPLATE.format(repo=repo, ref=ref, extras=extras)


def notebook_text(path: Path, repo: str, ref: str) -> str:
    """The notebook's text with its badge and set-up cells as they should be."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    wanted = {
        "colab-badge": badge(repo, ref, path),
        "colab-setup": setup_cell(repo, ref, path.name),
    }
    found = set()
    for cell in notebook["cells"]:
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag in wanted:
                found.add(tag)
                cell["source"] = as_source(wanted[tag])
    missing = set(wanted) - found
    if missing:
        raise SystemExit(f"{path}: no cell tagged {', '.join(sorted(missing))}")
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def markdown_text(path: Path, repo: str, ref: str) -> str:
    """The markdown file's text with its badge links and install lines pointing at ``repo`` and ``ref``."""
    text = path.read_text(encoding="utf-8")
    new = BADGE_URL.sub(f"https://colab.research.google.com/github/{repo}/blob/{ref}/", text)
    return re.sub(
        r"git\+https://github\.com/[^@\s\"]+@[^\s\"'`]+", f"git+https://github.com/{repo}@{ref}", new
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", help="owner/name of the GitHub repository (for a fork)")
    parser.add_argument("--ref", help="branch, tag or commit that Colab opens and installs (a release tag)")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    if args.check and (args.repo or args.ref):
        parser.error("--check changes nothing: give --repo and --ref without it")
    if args.repo:
        write_setting("repo", args.repo, REPO_PATTERN, "owner/name")
    if args.ref:
        write_setting("ref", args.ref, REF_PATTERN, "a branch, tag or commit (v1.0, main, 1a2b3c4)")
    repo, ref = read_settings()

    wanted = {p: notebook_text(p, repo, ref) for p in sorted(ROOT.glob("notebooks/**/*.ipynb"))}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path.exists():
            wanted[path] = markdown_text(path, repo, ref)
    stale = [path for path, text in wanted.items() if text != path.read_text(encoding="utf-8")]
    for path in stale:
        if args.check:
            print(f"out of date: {path.relative_to(ROOT)} (run `make set-repo`)")
        else:
            path.write_text(wanted[path], encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)} for {repo}@{ref}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
