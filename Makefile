# Two entry points, each sets up .venv from PyPI on a fresh machine:
#   make demo   generate, simulate against the golden model, synthesize, print the report
#   make test   the whole test suite on all cores
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intformer demo --preset icebreaker

test: $(STAMP)
	$(BIN)/python -m pytest -n auto -q

lint: $(STAMP)
	$(BIN)/ruff check hw sim boards intformer tests bench

bench: $(STAMP)
	$(BIN)/python bench/gemm.py

clean:
	rm -rf build/*/ $(VENV)
