"""Write tools/colab/constraints.txt, Colab's package versions as a pip constraints file, from Colab's
published ``pip freeze`` (googlecolab/backend-info, ``pip-freeze.gpu.txt``: the GPU runtime, which the
course uses).

    python tools/colab_constraints.py tools/colab/pip-freeze.gpu.txt --commit SHA --date YYYY-MM-DD
    python tools/colab_constraints.py ~/backend-info/pip-freeze.gpu.txt   # a git checkout: it finds SHA
    make colab-constraints FREEZE=~/backend-info/pip-freeze.gpu.txt       # the same, through make

A freeze from outside this repository is first copied to tools/colab/ (with ``os-info-gpu.txt`` from
its folder, which names Colab's Python), so the repository keeps the file that the constraints came
from. The header of the constraints file records the freeze's source commit and date, and Colab's
Python; ``tools/colab_job.py`` (``make test-colab``) installs Colab's versions from it and prints that
header. Lines that pin no version from an index (``name @ URL``: Colab's own wheels) are left out, and
so is a local version label (``torch==2.11.0+cu128`` -> ``torch==2.11.0``: the same release, its
CUDA build).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLAB = ROOT / "tools" / "colab"
OUT = COLAB / "constraints.txt"
SOURCE = "https://github.com/googlecolab/backend-info"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;+]+)(\+\S+)?\s*$")


def git_commit(freeze: Path) -> tuple[str, str] | None:
    """(commit, date) of the last commit that touched ``freeze``, if it lies in a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(freeze.parent), "log", "-1", "--format=%H %cs", "--", freeze.name],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    fields = done.stdout.split()
    return (fields[0], fields[1]) if len(fields) == 2 else None


def recorded_source(constraints_file: Path) -> tuple[str, str] | None:
    """(commit, date) recorded in the header of an existing constraints file."""
    if not constraints_file.is_file():
        return None
    text = constraints_file.read_text(encoding="utf-8")
    commit, date = re.search(r"^# commit: (\S+)", text, re.M), re.search(r"^# date: (\S+)", text, re.M)
    return (commit[1], date[1] if date else "unknown") if commit else None


def colab_python(os_info: Path) -> str:
    """Colab's Python version from ``os-info-gpu.txt`` (a line ``Python 3.13.15``), or "unknown"."""
    if os_info.is_file():
        for line in os_info.read_text(encoding="utf-8").splitlines():
            if line.startswith("Python "):
                return line.split()[1]
    return "unknown"


def constraints(freeze_text: str) -> tuple[list[str], list[str], list[str]]:
    """(``name==version`` lines, names left out, local labels dropped) from a ``pip freeze``."""
    pins, left_out, relabelled = [], [], []
    for line in freeze_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            left_out.append(line.split()[0])
            continue
        name, version, label = match.groups()
        pins.append(f"{name}=={version}")
        if label:
            relabelled.append(f"{name}=={version}{label}")
    return sorted(pins, key=str.lower), left_out, relabelled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("freeze", type=Path, help="Colab's pip-freeze.gpu.txt")
    parser.add_argument("--commit", help="the backend-info commit it comes from (default: from git)")
    parser.add_argument("--date", help="that commit's date, YYYY-MM-DD (default: from git)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    freeze = args.freeze.resolve()
    kept = COLAB / "pip-freeze.gpu.txt"
    if args.commit:
        found = None
    elif freeze == kept.resolve():  # this repository's copy: its source is in the present header
        found = recorded_source(args.out)
    else:
        found = git_commit(freeze)
    commit = args.commit or (found and found[0])
    date = args.date or (found and found[1]) or "unknown"
    if not commit:
        parser.error(f"{freeze} is not in a git checkout of backend-info: say --commit SHA (and --date)")
    if freeze != kept.resolve():  # keep the file the constraints come from, and Colab's os-info
        COLAB.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(freeze, kept)
        if (freeze.parent / "os-info-gpu.txt").is_file():
            shutil.copyfile(freeze.parent / "os-info-gpu.txt", COLAB / "os-info-gpu.txt")

    pins, left_out, relabelled = constraints(freeze.read_text(encoding="utf-8"))
    header = [
        "# Colab's package versions (GPU runtime), as pip constraints for `make test-colab`.",
        "# Generated by `make colab-constraints` (tools/colab_constraints.py); do not edit by hand.",
        f"# source: {SOURCE} pip-freeze.gpu.txt (copy: tools/colab/pip-freeze.gpu.txt)",
        f"# commit: {commit}",
        f"# date: {date}",
        f"# colab-python: {colab_python(COLAB / 'os-info-gpu.txt')}",
        f"# left out (installed from a URL or file, not an index): {', '.join(left_out) or 'none'}",
        f"# local version labels dropped: {', '.join(relabelled) or 'none'}",
    ]
    args.out.write_text("\n".join(header + pins) + "\n", encoding="utf-8")
    print(
        f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}: "
        f"{len(pins)} pins from commit {commit[:12]} ({date})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
