# Quickstart: `make engines` and `make test`. Both set themselves up (a .venv in this folder).
# PyTriton's bundled Python backend (the [serve] extra) fails to load models from a venv made by a pyenv-built
# Python (AttributeError: _recursion_count); the distribution's interpreter works. Use it when the machine has it.
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3)
VENV ?= .venv
ENGINES_DIR ?= engines
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install engines check test test-gpu lint bench mutate clean

install: $(STAMP)

# Reinstall only when the package metadata or the pins change: a no-op when up to date.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,serve,openvino]"
	touch $(STAMP)

engines: install
	$(BIN)/rsz-export build $(ENGINES_DIR) --min 224 --max 800

# The fast tier for the edit-test loop: no ResNet-50 export, about 55-65 s on 2 cores (AVX-512 to AVX2).
check: install
	$(BIN)/python -m pytest -m "not slow" -q -n 2

# The full suite (what CI runs), with line coverage of the TensorRT modules (pyproject.toml [tool.coverage]):
# the report is printed, and the run fails under 90%. Two pytest-xdist workers, each on a core of its own
# (tests/conftest.py), sharing the real-model fixtures: about 6-11 minutes on 2 cores (AVX-512 to AVX2).
test: install
	$(BIN)/python -m pytest -n 2 --cov --cov-report=term-missing

# On a machine with TensorRT and a CUDA GPU: build fp32/fp16/int8 over 224..800, validate, bench, run the GPU- and
# TensorRT-marked tests, and record what ran (exit codes, times, what only a GPU shows) in a dated JSON; about
# five minutes (benchmarks/gpu_check.py --help).
test-gpu: install
	$(BIN)/python benchmarks/gpu_check.py --out gpu-check --json benchmarks/results/gpu-check-$$(date -u +%Y-%m-%d).json

lint: install
	$(BIN)/python -m ruff check rsz_export tests benchmarks

bench: install
	$(BIN)/python benchmarks/run_standard.py

# Mutation testing on demand (not part of `make test`): mutmut 3 mutates the modules listed under [tool.mutmut]
# in pyproject.toml (parity and the verdict, the plan and routing, calibration statistics, the manifest,
# preprocessing) and runs the fast tests that cover them on each mutant; MUTANTS narrows it to some modules, e.g.
# make mutate MUTANTS='rsz_export.parity*'. Scores and surviving mutants: docs/testing.md. About 2000 mutants:
# more than an hour on 2 shared cores.
MUTANTS ?=
mutate: install
	$(BIN)/python -m pip show mutmut >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet "mutmut>=3.8,<4"
	$(BIN)/mutmut run $(MUTANTS) --max-children 2; $(BIN)/mutmut results

clean:
	rm -rf $(ENGINES_DIR) .pytest_cache mutants
