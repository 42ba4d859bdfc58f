# Every target works on a fresh machine with only Python 3.11, pip and gcc:
# it creates .venv and installs momentssn (editable) with what the target needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= out
# XLA CPU scheduler bug workaround (jax 0.10, see README).
export XLA_FLAGS += --xla_cpu_enable_concurrency_optimized_scheduler=false

.PHONY: setup run test test-slow bench validate compare clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $@

setup: $(VENV)/.installed

# The main job on the embedded default task (no download, no data to prepare).
run: setup
	$(BIN)/momentssn fit-baseline --task default --out $(OUT)/baseline

# The whole (fast) test suite.
test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python benchmarks/moments.py
	$(BIN)/python benchmarks/simulate.py
	$(BIN)/python benchmarks/train.py

validate: setup
	$(BIN)/momentssn validate --suite all --out $(OUT)/validation

# Training methods compared on the published task, every network judged by simulation
# (37 minutes on an idle 2-core machine: 5 runs x 480 s of training, then the scoring; README).
COMPARE_RUNS ?= moments-lbfgs:baseline15 corrected:baseline15 hybrid:baseline15 bptt:ring growth:general
COMPARE_BUDGET ?= 480
compare: setup
	$(BIN)/momentssn compare --task echeveste2020 --out $(OUT)/compare --budget $(COMPARE_BUDGET) \
		--runs $(COMPARE_RUNS)

clean:
	rm -rf $(VENV) $(OUT) *.egg-info

# Growth vs direct training of the General SSN on the natural-image task (README, "Natural
# images"): 16x16 patches, M = 16 filters (N = 32 cells), 3 seeds, 240 s per run; ~55 min on 2 cores.
.PHONY: natural-compare
natural-compare: setup
	$(BIN)/momentssn gsm --out $(OUT)/gsm16 --filters 16
	$(BIN)/python -m momentssn.experiments.natural_training --task $(OUT)/gsm16/task.npz --out $(OUT)/natural \
	  --seeds 0 1 2 --budget 240 --snapshots 3
