# RPAccel kit. Every target does its own set-up from a fresh clone.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
RPACCEL := $(VENV)/bin/rpaccel
STAMP   := $(VENV)/.installed
MODELS  ?= build/models
JOBS    ?= 2
REGRESS_QUERIES ?= 1000
SCHEDULER ?=

.PHONY: help setup data models demo test test-all lint quality synth board bench perf regress formal mutate dse fpga-calibrate clean

help:
	@echo "make demo    - set up, models, quality table, the whole accelerator (baseline vs default) on Verilator, paper-scale model"
	@echo "make test    - the regression (pytest -n $(JOBS))"
	@echo "make board   - the ULX3S-85F board top (UART host link, block-RAM tables): a real query over the UART on Verilator, then the bitstream (build/board; ~30 min here)"
	@echo "make fpga-calibrate - re-run the Yosys runs of the ECP5 resource model and refit it (rpaccel/fpga_model.json, docs/reports/fpga-calibration.json; ~40 min here, runs cached per block and config digest in build/fpga)"
	@echo "make synth   - ECP5-85F synthesis, placement and routing: requantize unit, mesh, the whole fpga-ecp5 accelerator (JSON; ~1 h here, cached per config digest in build/synth)"
	@echo "make quality - rpaccel quality --dataset ml100k --json"
	@echo "make models  - train and quantize the small/medium/large stage models"
	@echo "make perf    - the cycle model at the paper's scale: rpaccel perf, JSON and plots in build/perf"
	@echo "make regress - long random regression of the top level on a local Dask cluster (SCHEDULER=address for a cluster; JSON in build/regress)"
	@echo "make formal  - formal proofs of the RTL (SymbiYosys + Yices; JSON in build/formal)"
	@echo "make mutate  - mutation testing of the RTL, every block (Dask; JSON in build/mutate; hours)"
	@echo "make dse     - design-space exploration, ml100k and recpipe-criteo, 1000 points each on a local Dask cluster (SCHEDULER=address; JSON in build/dse, fronts in build/dse/img)"
	@echo "make bench   - array, cache, model calibration, top level (baseline vs default) and top-k benchmarks (JSON in build/bench; slow)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,train]"
	@# Icarus is the optional second simulator: best effort, tests skip it when absent.
	@command -v iverilog >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  [ "$$(id -u)" = 0 ] && apt-get install -y -q iverilog >/dev/null 2>&1 && \
	  echo "installed iverilog (Icarus)"; } || echo "iverilog not installed: Icarus tests will be skipped"
	@# lz4 headers let Verilator write FST waveforms (--waves, WAVES=1); without them: VCD.
	@[ -e /usr/include/lz4.h ] || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  apt-get install -y -q liblz4-dev >/dev/null 2>&1 && echo "installed liblz4-dev (FST waves)"; } || \
	  echo "liblz4-dev not installed: Verilator waves will be VCD"
	touch $(STAMP)

data: setup
	$(RPACCEL) fetch-data

models: data
	$(RPACCEL) models --models $(MODELS)

demo: models
	$(RPACCEL) demo --models $(MODELS)

quality: models
	$(RPACCEL) quality --dataset ml100k --models $(MODELS) --json

# the models first, alone on the cores (inside pytest one worker would wait on the other's
# training while Verilator builds compete with it)
test: models
	RPACCEL_MODELS=$(abspath $(MODELS)) $(PY) -m pytest -n $(JOBS) -q --durations=15

test-all: models
	RPACCEL_MODELS=$(abspath $(MODELS)) $(PY) -m pytest -n $(JOBS) -q -m "slow or not slow"

synth: setup
	$(RPACCEL) synth --block requant --config fpga-ecp5 --target ecp5-85f
	$(RPACCEL) synth --block mesh --config default --target ecp5-85f
	$(RPACCEL) synth --block rpaccel --config fpga-ecp5 --target ecp5-85f --freq 50 --placer static --router router2 --timeout 3600 --out build/synth/rpaccel-fpga-ecp5.json

board: models
	$(RPACCEL) board sim --models $(MODELS)
	$(RPACCEL) board build

lint: setup
	$(VENV)/bin/ruff check .
	$(RPACCEL) lint --config default
	$(RPACCEL) lint --block rpaccel --config baseline --config three-stage --config fpga-ecp5 --config ml1000
	$(RPACCEL) lint --block topk --config paper

regress: models
	$(RPACCEL) regress --queries $(REGRESS_QUERIES) --out build/regress/regress.json $(if $(SCHEDULER),--scheduler $(SCHEDULER),)

formal: setup
	$(RPACCEL) formal --out build/formal/formal.json $(if $(SCHEDULER),--scheduler $(SCHEDULER),)

mutate: models
	$(RPACCEL) mutate --out build/mutate/mutate.json $(if $(SCHEDULER),--scheduler $(SCHEDULER),)

DSE_POINTS ?= 1000
dse: models
	$(RPACCEL) dse --workload ml100k --points $(DSE_POINTS) --out build/dse/ml100k.json --plots build/dse/img $(if $(SCHEDULER),--scheduler $(SCHEDULER),)
	$(RPACCEL) dse --workload recpipe-criteo --points $(DSE_POINTS) --out build/dse/recpipe-criteo.json --plots build/dse/img $(if $(SCHEDULER),--scheduler $(SCHEDULER),)

fpga-calibrate: models
	$(RPACCEL) fpga calibrate --models $(MODELS) --out docs/reports/fpga-calibration.json --write-model $(if $(SCHEDULER),--scheduler $(SCHEDULER),)

clean:
	rm -rf build

perf: models
	$(RPACCEL) perf --workload recpipe-criteo --json --out build/perf/recpipe-criteo.json --plots build/perf
	$(RPACCEL) perf --workload ml100k --models $(MODELS) --json --out build/perf/ml100k.json --plots build/perf

bench: models
	$(RPACCEL) bench perf --models $(MODELS) --json --out build/bench/perf.json --plots build/bench
	$(RPACCEL) bench array --models $(MODELS) --json --out build/bench/array.json
	$(RPACCEL) bench cache --models $(MODELS) --json --out build/bench/cache.json
	$(RPACCEL) bench top --models $(MODELS) --json --out build/bench/top.json
	$(RPACCEL) bench fit --models $(MODELS) --json --out build/bench/fit.json
	$(RPACCEL) bench topk --json --out build/bench/topk.json
