# Two entry points, each sets up .venv from PyPI on a fresh machine:
#   make demo   generate, simulate against the golden model, synthesize, print the report
#   make test   the test suite on all cores (all but the ULX3S place-and-route; make test-all)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intformer demo --preset icebreaker

test: $(STAMP)
	$(BIN)/python -m pytest -n auto -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -n auto -q

lint: $(STAMP)
	$(BIN)/ruff check hw sim boards intformer tests bench

bench: $(STAMP)
	$(BIN)/python bench/gemm.py
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/resources.py --fmax

clean:
	rm -rf build/*/ $(VENV)
