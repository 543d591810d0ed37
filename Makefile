# Everything the project needs is installed by these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.livercad-installed
DEMO_OUT ?= demo_out
# pytest-xdist workers for `make test` (one per core of the 2-core reference machine; 0 runs in one process)
TEST_WORKERS ?= 2

.PHONY: install test lint demo demo-fast bench model clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision: the CPU-capable releases that lie on local disk (see README)
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check livercad tests benchmarks
	$(BIN)/python -m pytest -q -x -n $(TEST_WORKERS) --dist loadfile --durations=15

lint: $(STAMP)
	$(BIN)/ruff check livercad tests benchmarks

demo: $(STAMP)
	$(BIN)/livercad demo --out $(DEMO_OUT)

demo-fast: $(STAMP)
	$(BIN)/livercad demo --fast --out $(DEMO_OUT)

# The default stage-1 model shipped in livercad/models/liver (trained on the phantom only; not run by CI):
# generate the domain-randomised phantom, train a fixed number of steps, store float16, measure on the
# real scans of ../shared/realdata when they are there, and write the figures into the model card.
model: $(STAMP)
	$(BIN)/python -m livercad.segment.release --config configs/model.yaml --work build/model --infer-size 192
	-$(BIN)/python benchmarks/accept_real.py --tag model --precision fp32 --json-out build/model/accept_real.json \
		&& $(BIN)/python -m livercad.segment.release --card-results build/model/accept_real.json

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
