"""Mutation testing of the modules that carry the course's promises (``make mutants``, not part of CI).

A mutant is a copy of a module with one small change (``<`` for ``<=``, ``True`` for ``False``, a
deleted argument, ...). The tests meant to guard the module should fail on it ("killed"); a mutant
on which they all pass ("survived") is a change nobody would notice. For each module in
:data:`TARGETS`, mutmut (3.x, pinned in the Makefile) mutates the functions named there, runs
only the listed tests against each mutant, and this script prints every survivor's diff and a line
``caught/survived`` per module.

Each module runs in its own folder ``build/mutants/<module>/`` holding a copy of ``helpers/`` and
the listed test files, so the checkout itself is never mutated and an interrupted run leaves nothing
behind. ``python tools/mutants.py helpers/model/vit.py`` runs one module; ``--list`` shows the table.

Test runs that die by a timeout or a crash count as caught; mutants that no selected test reaches
count as survivors (``no tests``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "mutants"


@dataclass(frozen=True)
class Target:
    tests: tuple[str, ...]  # test files or node ids, relative to the repository root
    functions: tuple[str, ...] = ()  # "name" or "Class.method"; empty: every function of the module
    deselect: tuple[str, ...] = ()  # node ids of tests left out (slow ones the others make redundant)


# The one table to edit when a module moves: module -> the tests that should catch its mutants, and
# the functions carrying the promise (a large module is restricted to them to keep the run short).
TARGETS: dict[str, Target] = {
    # a resume ends with exactly the numbers and weights of an uninterrupted run; nothing is unpickled
    "helpers/train/state.py": Target(tests=("tests/test_training_state.py",)),
    # the cached ImageNet weights: loaded as plain tensors only, checked against the hash in their name
    "helpers/model/pretrained.py": Target(
        tests=("tests/test_pretrained.py",),
        functions=("sha256_prefix", "check_published_weights", "load_vit_b16_state_dict"),
        deselect=(
            "tests/test_pretrained.py::test_weights_in_the_hub_cache_load_offline_and_match_torchvision",
        ),
    ),
    # a detector folder: safetensors + JSON, every field checked before anything large is allocated
    "helpers/serving/inference.py": Target(
        tests=("tests/test_inference.py", "tests/test_detector_validation.py"),
        functions=("check_transform_spec", "check_weights_header", "load_predictor"),
    ),
    # the stratified split: round(n * fraction) per class, disjoint, complete, seeded
    "helpers/data/datasets.py": Target(tests=("tests/test_datasets.py",), functions=("stratified_split",)),
    # the attention: softmax(q k^T / sqrt(d)) v, written out and fused, as torchvision computes it
    "helpers/model/vit.py": Target(
        tests=(
            "tests/test_vit.py::test_both_attention_paths_match_torchvision",
            "tests/test_vit.py::test_attention_written_out_equals_fused_and_pytorch",
            "tests/test_vit.py::test_encoder_block_equals_pytorch_encoder_layer",
            "tests/test_vit.py::test_default_attention_does_not_compute_weights",
            "tests/test_vit.py::test_attention_maps",
        ),
        functions=(
            "MultiHeadSelfAttention.__init__",
            "MultiHeadSelfAttention.split_heads",
            "MultiHeadSelfAttention.attention_weights",
            "MultiHeadSelfAttention.forward",
            "MultiHeadSelfAttention.forward_class_token",
        ),
    ),
}

# mutmut's command line, run by this Python. Not `python -m mutmut`: its trampolines import
# mutmut.__main__ again, which must be the module already running.
MUTMUT = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]
KILLED = {"killed", "timeout", "segfault", "suspicious"}  # the tests noticed (failed, hung or crashed)


def mutant_pattern(module: str, function: str) -> str:
    """mutmut's names for the mutants of one function, e.g.
    ``helpers.model.vit.xǁMultiHeadSelfAttentionǁforward__mutmut_*``."""
    dotted = module.removesuffix(".py").replace("/", ".")
    if "." in function:
        cls, method = function.split(".")
        return f"{dotted}.xǁ{cls}ǁ{method}__mutmut_*"
    return f"{dotted}.x_{function}__mutmut_*"


def prepare(module: str, target: Target) -> Path:
    """A fresh folder with helpers/, the target's test files and a pyproject.toml configuring mutmut."""
    work = BUILD / module.removesuffix(".py").replace("/", ".")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ROOT / "helpers", work / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    files = {test.split("::")[0] for test in target.tests} | {"tests/conftest.py"}
    for name in sorted(files):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, work / name)
    deselect = [arg for test in target.deselect for arg in ("--deselect", test)]
    config = (
        "[tool.mutmut]\n"
        'source_paths = ["helpers/"]\n'
        f"only_mutate = {json.dumps([module])}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps([*target.tests, *deselect])}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]\n'
        "use_git_change_detection = false\n"
        "timeout_multiplier = 5.0\n"  # a mutant that hangs is stopped after 5x its tests' time
        "\n[tool.pytest.ini_options]\n"
        'markers = ["slow: slow", "browser: browser"]\n'
        'filterwarnings = ["ignore::DeprecationWarning:jupyter_client.*"]\n'
    )
    (work / "pyproject.toml").write_text(config, encoding="utf-8")
    return work


def results(work: Path, module: str) -> dict[str, str]:
    """``{mutant name: status}`` from mutmut's record of the run."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((work / "mutants" / f"{module}.meta").read_text(encoding="utf-8"))
    return {name: status_by_exit_code.get(code, str(code)) for name, code in meta["exit_code_by_key"].items()}


def run(module: str, target: Target, jobs: int) -> tuple[int, int, list[str]]:
    """Mutate ``module``, run its tests on each mutant; return (caught, survived, survivor diffs)."""
    work = prepare(module, target)
    # One thread: mutmut forks a child per mutant from a process that ran the tests, and a child of a
    # process whose OpenMP thread pool was in use spins until its CPU limit ("timeout") instead of testing.
    env = {
        **os.environ,
        "PYTHONPATH": "",
        "MPLBACKEND": "Agg",
        "FAKEVIT_MODE": "small",
        "OMP_NUM_THREADS": "1",
    }
    patterns = [mutant_pattern(module, f) for f in target.functions]
    command = [*MUTMUT, "run", "--max-children", str(jobs), *patterns]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
        raise SystemExit(f"mutmut failed on {module} (exit code {done.returncode}); see above")
    found = results(work, module)
    if target.functions:
        wanted = tuple(p.removesuffix("*") for p in patterns)
        found = {name: status for name, status in found.items() if name.startswith(wanted)}
    survivors = sorted(name for name, status in found.items() if status not in KILLED)
    diffs = []
    for name in survivors:
        show = subprocess.run([*MUTMUT, "show", name], cwd=work, env=env, capture_output=True, text=True)
        diffs.append(f"--- {name} ({found[name]})\n{show.stdout.strip()}")
    caught = len(found) - len(survivors)
    print(f"{module}: {len(found)} mutants in {time.perf_counter() - start:.0f} s", flush=True)
    return caught, len(survivors), diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules of TARGETS to run (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    parser.add_argument("--list", action="store_true", help="print the module -> tests table and exit")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - set(TARGETS)
    if unknown:
        parser.error(f"not in TARGETS: {sorted(unknown)}; choose from {list(TARGETS)}")
    chosen = {m: t for m, t in TARGETS.items() if not args.modules or m in args.modules}
    if args.list:
        for module, target in chosen.items():
            print(f"{module} [{', '.join(target.functions) or 'every function'}]: {' '.join(target.tests)}")
        return 0
    table = {module: run(module, target, args.jobs) for module, target in chosen.items()}
    for module, (_, _, diffs) in table.items():
        if diffs:
            print(f"\nSurvivors in {module}:\n" + "\n\n".join(diffs))
    print("\nmodule                          caught  survived")
    for module, (caught, survived, _) in table.items():
        print(f"{module:32s} {caught:6d}  {survived:8d}")
    total_caught = sum(c for c, _, _ in table.values())
    total_survived = sum(s for _, s, _ in table.values())
    print(f"{'total':32s} {total_caught:6d}  {total_survived:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
