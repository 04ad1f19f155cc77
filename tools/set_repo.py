"""Point every Open-in-Colab badge and Colab set-up cell at the repository named in pyproject.toml.

The public repository is named in exactly one place, ``[tool.fakevit] repo`` in pyproject.toml.
The notebooks' first cells and the README's badges are generated from it:

    python tools/set_repo.py                         # rewrite from pyproject.toml
    python tools/set_repo.py --repo you/your-fork    # record a fork in pyproject.toml, then rewrite
    python tools/set_repo.py --check                 # exit 1 if anything is out of date (used by tests)

In a notebook, the badge is the markdown cell tagged ``colab-badge`` and the set-up is the code cell
tagged ``colab-setup``.
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
BADGE_URL = re.compile(r"https://colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/[^/\s]+/")

SETUP_TEMPLATE = """\
# Colab set-up: install the course's `helpers` package from GitHub. Colab already has torch
# and torchvision, and this leaves them as they are. Anywhere else this cell does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    package = "fake-vit-course[demo] @ git+https://github.com/{repo}@{branch}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", package], check=True)"""


def read_settings() -> tuple[str, str]:
    settings = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["fakevit"]
    return settings["repo"], settings["branch"]


def write_repo(repo: str) -> None:
    if not REPO_PATTERN.match(repo):
        raise SystemExit(f"--repo must look like owner/name, got {repo!r}")
    text = PYPROJECT.read_text(encoding="utf-8")
    new = re.sub(r'(?m)^repo = ".*"$', f'repo = "{repo}"', text, count=1)
    PYPROJECT.write_text(new, encoding="utf-8")


def badge(repo: str, branch: str, notebook: Path) -> str:
    relative = notebook.relative_to(ROOT).as_posix()
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{repo}/blob/{branch}/{relative})"
    )


def as_source(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def notebook_text(path: Path, repo: str, branch: str) -> str:
    """The notebook's text with its badge and set-up cells as they should be."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    wanted = {
        "colab-badge": badge(repo, branch, path),
        "colab-setup": SETUP_TEMPLATE.format(repo=repo, branch=branch),
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


def markdown_text(path: Path, repo: str, branch: str) -> str:
    """The markdown file's text with its badge links and install lines pointing at ``repo``."""
    text = path.read_text(encoding="utf-8")
    new = BADGE_URL.sub(f"https://colab.research.google.com/github/{repo}/blob/{branch}/", text)
    return re.sub(
        r"git\+https://github\.com/[^@\s\"]+@[^\s\"']+", f"git+https://github.com/{repo}@{branch}", new
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", help="owner/name of the GitHub repository (for a fork)")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    if args.repo and not args.check:
        write_repo(args.repo)
    repo, branch = read_settings()

    wanted = {p: notebook_text(p, repo, branch) for p in sorted(ROOT.glob("notebooks/**/*.ipynb"))}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if path.exists():
            wanted[path] = markdown_text(path, repo, branch)
    stale = [path for path, text in wanted.items() if text != path.read_text(encoding="utf-8")]
    for path in stale:
        if args.check:
            print(f"out of date: {path.relative_to(ROOT)} (run `make set-repo`)")
        else:
            path.write_text(wanted[path], encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)} for {repo}@{branch}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
