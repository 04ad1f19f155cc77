"""The Colab-versions job (``make test-colab``): the course on the package versions Colab preinstalls.

    python3 tools/colab_job.py            # what `make test-colab` and CI run (about 5 minutes)
    python3 tools/colab_job.py --reuse    # keep .venv-colab if it is there (quicker; for debugging)

Learners run the lessons on Colab's preinstalled packages, not on what pip resolves today. This job:

1. makes a second virtual environment, ``.venv-colab``, with Colab's own pip and, pinned by
   ``tools/colab/constraints.txt`` (Colab's published ``pip freeze``, see tools/colab_constraints.py),
   Colab's versions of every package the course touches and of everything they pull in. Where this
   machine cannot have Colab's version (:data:`DEVIATIONS`: torch and torchvision, and the Python
   version) it says so and why;
2. installs the course into it exactly as the lessons' Colab set-up cells do (``pip install
   "fake-vit-course[demo] @ <the course>"``, no constraints), after asking pip first for its report
   (``pip install --dry-run --report``) and failing if pip would change any of Colab's packages;
3. runs every lesson in small mode on that environment's kernel (``tools/run_notebooks.py``), failing
   on any stderr that ``make test`` would fail on (``tools/notebook_stderr.py``);
4. starts the demo app (``app/app.py``) on Colab's gradio, asks it for a prediction with
   ``gradio_client`` and fails if the server logged a warning or a traceback.

Everything it writes goes to ``build/colab/`` (the lessons' course home, pip's reports and logs,
executed notebooks) and ``.venv-colab/``. It needs only this machine's Python and pip's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "tools" / "colab" / "constraints.txt"
VENV = ROOT / ".venv-colab"
BUILD = ROOT / "build" / "colab"
# Colab's packages that this job cannot install here: the version it uses instead (None: the newest
# that fits, unpinned) and why. Only torch decides; the rest follow from it or from the Python version.
FOLLOWS_TORCH = "torch 2.14.1 pins its own (Colab's version goes with torch 2.11)"
DEVIATIONS: dict[str, tuple[str | None, str]] = {
    "torch": (
        "2.14.1",
        "Colab's 2.11.0+cu128 is a CUDA build (530 MB and ~3 GB of nvidia-* wheels; its "
        "nvidia-cudnn-cu13==9.19.0.56 is not on this machine's index); this machine has 2.14.1 "
        "for Python 3.11",
    ),
    "torchvision": ("0.29.1", "goes with torch 2.14.1 (Colab's 0.26.0 needs torch 2.11.0)"),
    "setuptools": (None, "torch 2.14.1 needs setuptools>=77.0.3"),
    "triton": (None, FOLLOWS_TORCH),
    "cuda-toolkit": (None, FOLLOWS_TORCH),
    "cuda-bindings": (None, FOLLOWS_TORCH),
    "nvidia-nccl-cu13": (None, FOLLOWS_TORCH),
    "tifffile": (None, "Colab's 2026.8.16 needs Python >= 3.12; the newest for this Python"),
}
# Colab's preinstalled packages that the lessons' kernel uses besides the course's requirements.
KERNEL = ["numpy", "pandas", "ipykernel", "ipython", "ipywidgets", "jupyter_client"]
# What the job needs to run the lessons headless; Colab lacks it, so it is installed after the check.
TEST_TOOLS = ["papermill"]
UV = "uv==0.13.9"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)[0])


def read_constraints(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({canonical name: Colab's version}, {header key: value}) from tools/colab/constraints.txt."""
    pins, header = {}, {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            header[key] = value
        elif "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins, header


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


class Job:
    def __init__(self, python: str, reuse: bool):
        self.python, self.reuse = python, reuse
        self.colab, self.header = read_constraints(CONSTRAINTS)
        self.pip_env = {**os.environ, "PIP_PROGRESS_BAR": "off", "PIP_NO_INPUT": "1"}
        self.start = time.perf_counter()
        self.failures: list[str] = []

    # -- helpers --------------------------------------------------------------------------------
    def pip(self, *args: str, log: str) -> None:
        """``.venv-colab/bin/python -m pip ARGS`` with its output in build/colab/LOG; fail loudly."""
        with open(BUILD / log, "w") as out:
            done = subprocess.run(
                [str(VENV / "bin" / "python"), "-m", "pip", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.pip_env,
                cwd=BUILD,
            )
        if done.returncode != 0:
            tail = (BUILD / log).read_text(errors="replace").splitlines()[-30:]
            raise SystemExit(
                f"pip {' '.join(args[:3])} ... failed; build/colab/{log} ends:\n" + "\n".join(tail)
            )

    def installed(self) -> dict[str, str]:
        out = subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "list", "--format=json"],
            capture_output=True,
            text=True,
            check=True,
            env=self.pip_env,
        ).stdout
        return {canonical(p["name"]): p["version"] for p in json.loads(out)}

    def elapsed(self) -> str:
        return f"{time.perf_counter() - self.start:5.0f} s"

    # -- steps ----------------------------------------------------------------------------------
    def course_requirements(self) -> list[str]:
        """The course's requirements that lesson 06 installs in Colab: its dependencies and [demo]."""
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        return [*project["dependencies"], *project["optional-dependencies"]["demo"]]

    def effective_constraints(self) -> Path:
        """Colab's constraints with :data:`DEVIATIONS` put in; printed as a table."""
        section(f"Colab's versions: {CONSTRAINTS.relative_to(ROOT)}")
        for key in ("source", "commit", "date"):
            print(f"  freeze {key}: {self.header.get(key, '?')}")
        here = ".".join(map(str, sys.version_info[:3])) if self.python == sys.executable else None
        here = (
            here
            or subprocess.run(
                [self.python, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        colab_python = self.header.get("colab-python", "?")
        note = (
            ""
            if here.rsplit(".", 1)[0] == colab_python.rsplit(".", 1)[0]
            else (
                "  <- DEVIATES: torch for this machine is built for its own Python (3.11) only; "
                "set COLAB_PYTHON=python3.13 where a torch for 3.13 installs"
            )
        )
        print(f"  Python: Colab {colab_python}, this job {here} ({self.python}){note}")
        lines = CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        for name, (version, _why) in DEVIATIONS.items():
            lines = [
                (f"{name}=={version}" if version else f"# {line}  (left out: {name} deviates)")
                if not line.startswith("#") and requirement_name(line) == name
                else line
                for line in lines
            ]
        path = BUILD / "constraints-used.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def uv(self) -> Path:
        """uv, into build/colab/uv (seconds): it builds Colab's image from its cache in seconds, where pip
        takes minutes to unpack torch and its ~3 GB of nvidia-* libraries again."""
        uv = BUILD / "uv" / "bin" / "uv"
        if not uv.is_file():
            with open(BUILD / "pip-uv.log", "w") as log:
                subprocess.run(
                    [self.python, "-m", "pip", "install", "--target", str(BUILD / "uv"), UV],
                    check=True,
                    env=self.pip_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        return uv

    def pip_sources(self) -> list[str]:
        """pip's indexes and find-links (pip.conf, $PIP_...) as uv options: uv reads no pip.conf."""
        listed = subprocess.run(
            [self.python, "-m", "pip", "config", "list"], capture_output=True, text=True, env=self.pip_env
        ).stdout
        options = []
        for key, value in re.findall(r"^[^.\s]*\.([\w-]+)='(.*)'$", listed, re.M):
            flag = {
                "index-url": "--index-url",
                "extra-index-url": "--extra-index-url",
                "find-links": "--find-links",
            }.get(key)
            for url in value.split() if flag else []:
                if [flag, url] not in [options[i : i + 2] for i in range(0, len(options), 2)]:
                    options += [flag, url]
        return options

    def make_venv(self, constraints: Path) -> list[str]:
        """.venv-colab with Colab's pip and Colab's versions of what the course touches; the names.

        Colab's image is not made by pip, so uv builds this one (same versions: all are pinned); pip,
        Colab's own, installs the course into it.
        """
        base = sorted({requirement_name(r) for r in self.course_requirements()} | set(KERNEL))
        base = [name for name in base if name in self.colab]
        if self.reuse and (VENV / ".colab-base").is_file():
            print(f"  reusing {VENV.name} (--reuse)")
            return base
        section(f"set-up: {VENV.name} with Colab's versions")
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([self.python, "-m", "venv", "--without-pip", str(VENV)], check=True)
        command = [
            str(self.uv()),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(VENV / "bin" / "python"),
            "--index-strategy",
            "unsafe-best-match",
            *self.pip_sources(),
            "-c",
            str(constraints),
            "pip",
            *base,
        ]
        with open(BUILD / "uv-colab-base.log", "w") as log:
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                raise SystemExit(
                    "uv could not install Colab's versions:\n" + (BUILD / "uv-colab-base.log").read_text()
                )
        (VENV / ".colab-base").write_text("\n".join(base) + "\n")
        print(
            f"  installed Colab's {len(base)} packages that the course touches, what they need, and "
            f"Colab's pip ({self.elapsed()})"
        )
        return base

    def print_versions(self, base: list[str]) -> None:
        have = self.installed()
        section("versions: Colab's -> this job's")
        shown = list(dict.fromkeys(base + ["gradio-client", "pip"] + [n for n in DEVIATIONS if n in have]))
        for name in shown:
            colab, used = self.colab.get(name, "-"), have.get(name, "-")
            why = f"  DEVIATES: {DEVIATIONS[name][1]}" if name in DEVIATIONS else ""
            if not why and colab != used:
                why = "  DEVIATES (unexplained)"
                self.failures.append(f"{name} {used} is not Colab's {colab}")
            print(f"  {name:18s} {colab:>10s} -> {used:10s}{why}")
        others = sorted(n for n in have if n in self.colab and n not in shown and have[n] != self.colab[n])
        for name in others:
            self.failures.append(f"{name} {have[name]} is not Colab's {self.colab[name]}")
            print(f"  {name:18s} {self.colab[name]:>10s} -> {have[name]:10s}  DEVIATES (unexplained)")
        not_colab = sorted(n for n in have if n not in self.colab)
        print(
            f"  ({len(have)} packages in all, each at Colab's version but the above; not in Colab's list: "
            f"{', '.join(not_colab) or 'none'})"
        )

    def course_wheel(self) -> Path:
        """What pip makes of ``git+https://...``: the package's files (copied to build/colab/src), built
        into a wheel once by Colab's pip (build/colab/wheel), for the two reports and the install."""
        src, wheels = BUILD / "src", BUILD / "wheel"
        for folder in (src, wheels):
            shutil.rmtree(folder, ignore_errors=True)
        src.mkdir(parents=True)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "helpers", src / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
        self.pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(src), log="pip-wheel.log")
        (wheel,) = wheels.glob("fake_vit_course-*.whl")
        return wheel

    def install_course(self) -> None:
        """Install the course as the set-up cells do, after checking pip's report of what it would do."""
        section("the course, installed as the Colab set-up cells install it")
        src = self.course_wheel()
        before = self.installed()
        for extra in ("", "[demo]"):  # lessons 01-05, lesson 06
            package = f"fake-vit-course{extra} @ {src.as_uri()}"
            report_file = BUILD / f"pip-report{extra.strip('[]') and '-demo'}.json"
            self.pip("install", "--dry-run", "--report", str(report_file), package, log="pip-dry-run.log")
            report = json.loads(report_file.read_text())
            added, changed = [], []
            for item in report["install"]:
                name, version = canonical(item["metadata"]["name"]), item["metadata"]["version"]
                if name in before or (name in self.colab and self.colab[name] != version):
                    was = before.get(name) or self.colab[name]
                    changed.append(f"{name} {was} -> {version}")
                else:
                    added.append(f"{name} {version}")
            print(f'  pip install "fake-vit-course{extra} @ git+..." would add: {", ".join(added)}')
            if changed:
                self.failures.append(
                    f"installing fake-vit-course{extra} changes Colab's " + ", ".join(changed)
                )
                print(f"  and CHANGE Colab's packages: {', '.join(changed)}  <- FAILED")
            else:
                print(
                    f"  and change none of Colab's packages ({len(before)} installed here, "
                    f"report: {report_file.relative_to(ROOT)})"
                )
        self.pip("install", f"fake-vit-course[demo] @ {src.as_uri()}", log="pip-course.log")
        after = self.installed()
        moved = sorted(f"{n} {v} -> {after.get(n)}" for n, v in before.items() if after.get(n) != v)
        if moved:
            self.failures.append("the real install changed " + ", ".join(moved))
        self.pip("install", "-c", str(BUILD / "constraints-used.txt"), *TEST_TOOLS, log="pip-test-tools.log")
        tools = self.installed()
        new = sorted(f"{n} {v}" for n, v in tools.items() if n not in after and n not in self.colab)
        colab = sorted(f"{n} {v}" for n, v in tools.items() if n not in after and n in self.colab)
        print(
            f"  then, to run the lessons headless: {', '.join(new)} (not in Colab), with Colab's "
            f"{', '.join(colab) or 'nothing else'} ({self.elapsed()})"
        )

    def run_lessons(self) -> None:
        section("every lesson in small mode on this kernel, failing on unexpected stderr")
        home = BUILD / "home"
        shutil.rmtree(home, ignore_errors=True)
        env = {
            **os.environ,
            "FAKEVIT_MODE": "small",
            "FAKEVIT_HOME": str(home),  # the lessons' shared course home (Colab: a folder on Drive)
            "FAKEVIT_FIGURES": str(BUILD / "figures"),
            "MPLBACKEND": "Agg",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # ipykernel 6.17's debugger notes on this terminal
        }
        done = subprocess.run(
            [
                str(VENV / "bin" / "python"),
                str(ROOT / "tools" / "run_notebooks.py"),
                "--mode",
                "small",
                "--out",
                str(BUILD / "notebooks"),
                "--fail-on-stderr",
            ],
            env=env,
            cwd=ROOT,
        )
        if done.returncode != 0:
            self.failures.append("a lesson failed or wrote to stderr (see above)")

    def check_demo(self) -> None:
        section("the demo app on Colab's gradio: one prediction through gradio_client")
        detector = BUILD / "home" / "build" / "detector"
        done = subprocess.run(
            [
                str(VENV / "bin" / "python"),
                str(ROOT / "tools" / "colab_demo_check.py"),
                str(detector),
                str(BUILD / "demo"),
            ],
            cwd=ROOT,
        )
        if done.returncode != 0:
            self.failures.append("the demo app check failed (see above)")

    def run(self) -> int:
        BUILD.mkdir(parents=True, exist_ok=True)
        constraints = self.effective_constraints()
        base = self.make_venv(constraints)
        self.print_versions(base)
        if not self.reuse or not (VENV / ".course-installed").is_file():
            self.install_course()
            (VENV / ".course-installed").touch()
        setup = time.perf_counter() - self.start
        self.run_lessons()
        self.check_demo()
        section("summary")
        print(f"  Colab's freeze: commit {self.header.get('commit', '?')} ({self.header.get('date', '?')})")
        print(f"  set-up {setup:.0f} s, in all {time.perf_counter() - self.start:.0f} s")
        for failure in self.failures:
            print(f"  FAILED: {failure}")
        checks = 5  # versions, the two installs, the lessons, the demo app
        failed = min(len(self.failures), checks)
        print("  Colab-versions job: " + ("FAILED" if self.failures else "passed"))
        print(f"test-colab: {checks - failed} passed, {failed} failed")
        return 1 if self.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--python",
        default=os.environ.get("COLAB_PYTHON") or sys.executable,
        help="the Python for .venv-colab (default: $COLAB_PYTHON, else this one)",
    )
    parser.add_argument("--reuse", action="store_true", help="keep .venv-colab and its course install")
    args = parser.parse_args(argv)
    return Job(args.python, args.reuse).run()


if __name__ == "__main__":
    sys.exit(main())
