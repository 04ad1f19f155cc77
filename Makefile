# FaKe-ViT course. On a fresh machine with Python 3.11 (each sets itself up first):
#   make run    execute every lesson headless in small mode
#   make check  lint and the quick unit tests (not marked slow or browser; no notebooks): under a minute
#   make test   lint, pytest (every unit test, every notebook through nbval), then the full-mode rehearsal

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
# The exact versions `make setup` installs (pip constraints); `make lock` regenerates it.
LOCK := requirements.lock
# Colab's published `pip freeze` that `make colab-constraints` turns into tools/colab/constraints.txt.
FREEZE ?= tools/colab/pip-freeze.gpu.txt
# The Jupyter kernel `make setup` registers in .venv: this environment's Python, under the course's name.
KERNEL := fake-vit
KERNEL_DISPLAY_NAME := FaKe-ViT course (.venv)
# Extra options for `make lab`, e.g. LAB_ARGS="--no-browser --port 8899"
LAB_ARGS ?=
# Notebook figures go to figures/ for `make run`; tests write theirs to build/ so the tree stays clean.
TEST_ENV := FAKEVIT_MODE=small FAKEVIT_FIGURES=$(CURDIR)/build/test-figures MPLBACKEND=Agg

.PHONY: help setup run check test test-notebooks test-units lint figures clean distclean set-repo clean-notebooks rehearse lab mutants \
	lock test-colab colab-constraints

help:
	@echo "make run        execute every lesson in small mode -> build/notebooks/, figures/"
	@echo "make check      ruff and the quick unit tests, no notebooks (under a minute on 2 cores)"
	@echo "make test       what CI runs: ruff, pytest (all unit tests, every notebook), make rehearse"
	@echo "make lab        open the course in JupyterLab, on the course's kernel"
	@echo "make figures    regenerate every figure in figures/ (lessons, toy data, demo screenshot)"
	@echo "make rehearse   every lesson in full mode, offline, each in a fresh folder, against stand-ins"
	@echo "make lint       ruff check and ruff format --check, notebook checks"
	@echo "make mutants    mutation testing of the modules that carry the promises (slow, not in CI)"
	@echo "make test-colab every lesson and the demo on Colab's package versions, in .venv-colab"
	@echo "make colab-constraints FREEZE=path/to/pip-freeze.gpu.txt   Colab's versions from a newer freeze"
	@echo "make lock       re-resolve pyproject's ranges in a fresh environment -> requirements.lock"
	@echo "make set-repo REPO=you/your-fork   point badges and Colab set-up cells at a fork"
	@echo "make set-repo REF=v1.0   make them open and install a tag (a release) or commit"
	@echo "make clean-notebooks   strip outputs (keeps only cells nbval checks)"
	@echo "make clean / distclean   remove build outputs / also the virtual environment"

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) tools/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev,demo]"
	bash tools/install_system_deps.sh
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "$(KERNEL_DISPLAY_NAME)"
	touch $@

run: $(STAMP)
	MPLBACKEND=Agg $(PY) tools/run_notebooks.py --mode small

figures: run
	$(PY) tools/toy_figures.py --data data/toy --out figures
	$(PY) tools/demo_screenshot.py --out figures/demo.png

# JupyterLab on the checkout, opened at notebooks/. It offers only the course's kernel, so every notebook
# (their metadata says "python3", which Colab expects) opens on this environment's Python.
lab: $(STAMP)
	$(PY) -m jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks \
		--KernelSpecManager.allowed_kernelspecs=$(KERNEL) --MultiKernelManager.default_kernel_name=$(KERNEL) \
		$(LAB_ARGS)

# Full mode as in fresh Colab runtimes: local Hub, stand-in train.zip and weights -> build/rehearsal/
rehearse: $(STAMP)
	$(PY) tools/rehearse.py

LINTED := helpers tests notebooks tools benchmarks app conftest.py

lint: $(STAMP)
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) tools/set_repo.py --check
	$(PY) tools/lesson_map.py --check
	$(PY) tools/lesson_times.py --check
	$(PY) tools/clean_notebooks.py --check notebooks/*.ipynb notebooks/solutions/*.ipynb

# The quick tier: tests marked slow (pytest --durations shows them) or browser wait for `make test`.
check: lint
	$(TEST_ENV) $(PY) -m pytest tests -m "not slow and not browser"

# Two streams at once, which on 2 cores fill each other's idle time, of about equal length: every notebook
# through nbval, in lesson order in one process, then the rehearsal's "empty" scenario; the unit tests, then
# its "fresh" scenario. Each stream's output is printed as it ends. One PyTorch thread per process: two
# processes spinning two threads each on 2 cores slow each other 7-14x.
test: lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-notebooks test-units

test-notebooks: $(STAMP)
	OMP_NUM_THREADS=1 $(TEST_ENV) $(PY) -m pytest notebooks
	OMP_NUM_THREADS=1 $(PY) tools/rehearse.py --scenario empty --out build/rehearsal/empty

test-units: $(STAMP)
	OMP_NUM_THREADS=1 $(TEST_ENV) $(PY) -m pytest tests
	OMP_NUM_THREADS=1 $(PY) tools/rehearse.py --scenario fresh --out build/rehearsal/fresh

# Mutation testing (not part of `make test`: about 10 minutes on 2 cores). The module -> tests table is
# TARGETS in tools/mutants.py; mutmut is installed here only, not in the dev extra.
MUTMUT := mutmut==3.8.1

mutants: $(STAMP)
	$(PY) -m pip install --quiet '$(MUTMUT)'
	$(PY) tools/mutants.py

# The course on Colab's versions (tools/colab/constraints.txt) in a second environment, .venv-colab:
# installed as the Colab set-up cells do, every lesson in small mode, the demo. CI runs it after `make test`.
test-colab:
	$(PYTHON) tools/colab_job.py

colab-constraints:
	$(PYTHON) tools/colab_constraints.py $(FREEZE) $(if $(COMMIT),--commit $(COMMIT)) $(if $(DATE),--date $(DATE))

# Resolve pyproject's ranges afresh (newest versions) and record them in requirements.lock. Then run
# `make distclean test test-colab` on the new lock before committing it.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install --quiet --upgrade pip
	build/lock-venv/bin/python -m pip install --quiet -e ".[dev,demo]"
	$(PYTHON) tools/lock.py build/lock-venv
	rm -rf build/lock-venv

set-repo: $(STAMP)
	$(PY) tools/set_repo.py $(if $(REPO),--repo $(REPO)) $(if $(REF),--ref $(REF))

clean-notebooks: $(STAMP)
	$(PY) tools/clean_notebooks.py notebooks/*.ipynb notebooks/solutions/*.ipynb

clean:
	rm -rf build .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) .venv-colab data/toy
