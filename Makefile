# Task index. Every target sets up .venv on first use; variables override defaults,
# e.g. `make dataset SIZE=100 SAMPLES=100000 WORKERS=8`.
PY      := .venv/bin/python
# The machine's kind picks the builds: CUDA TensorFlow and JAX where nvidia-smi exists, CPU ones elsewhere.
# The stamp names the kind, so a .venv made on the other kind is rebuilt, not reused.
KIND    := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP   := .venv/.installed-$(KIND)
OTHER_KIND_STAMPS := $(filter-out $(STAMP),$(wildcard .venv/.installed-*))

# Dataset settings: unset ones take `python -m pipeline generate`'s defaults (see its --help).
SIZE         ?= 50
OUT          ?= datasets/moving-square-$(SIZE)
SCHEDULER    ?=
QUICK        ?=
RESULTS      ?= $(wildcard bench/results/*.json)

.PHONY: setup dataset verify lint test test-slow test-faults bench bench-micro report compare docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(if $(OTHER_KIND_STAMPS),rm -rf .venv)
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(KIND),dev]'
	touch $@

dataset: $(STAMP)
	$(PY) -m pipeline generate --out $(OUT) --size $(SIZE) $(if $(VARIANT),--variant $(VARIANT)) \
	  $(if $(SAMPLES),--samples $(SAMPLES)) $(if $(TEST_SAMPLES),--test-samples $(TEST_SAMPLES)) \
	  $(if $(SHARD_SIZE),--shard-size $(SHARD_SIZE)) $(if $(SEED),--seed $(SEED)) \
	  $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

verify: $(STAMP)
	$(PY) -m pipeline verify $(OUT)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-faults: $(STAMP)
	$(PY) -m pytest -q -m faults

bench: $(STAMP)
	$(PY) -m pipeline bench $(if $(QUICK),--quick)

bench-micro: $(STAMP)
	$(PY) -m pytest bench/micro -o addopts="" --benchmark-only --benchmark-autosave --benchmark-storage=bench/results/micro $(if $(COMPARE),--benchmark-compare=$(COMPARE))

report: $(STAMP)
	$(if $(RESULTS),,$(error no result files: run `make bench` first or pass RESULTS="a.json b.json"))
	$(PY) -m pipeline report $(RESULTS) --out bench/report

# RESULTS as given, else the newest file in bench/results/ (its name starts with its UTC time)
compare: $(STAMP)
	$(if $(RESULTS),,$(error no result files: run `make bench` first or pass RESULTS=FILE))
	$(PY) -m pipeline compare $(if $(filter file,$(origin RESULTS)),$(lastword $(sort $(RESULTS))),$(RESULTS))

docs: $(STAMP)
	$(PY) -m pipeline report bench/results/reference/*.json --page docs/performance.md \
		--startup bench/results/reference/startup/open-scaling.json

clean:
	rm -rf .pytest_cache .benchmarks
