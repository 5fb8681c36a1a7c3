# Two commands from a fresh clone: `make demo` (main job on the embedded default) and `make test`.
PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 3000
API_PORT ?= 8000
HOST ?= 127.0.0.1
PARALLEL ?= 4
, := ,

.PHONY: demo test ui hub bench bench-daemon bench-resolution bench-accuracy bench-propagation bench-feeds bench-feeds-api bench-publication bench-match-api bench-report bench-quality bench-pipeline bench-scale install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/enteronce run

# On every core; each test module stays on one worker (--dist loadscope), so a module's simulated
# network is built once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadscope

# The hub on the embedded default: Dagster daemon + UI on PORT, feed API on API_PORT.
ui: $(STAMP)
	$(BIN)/enteronce hub --host $(HOST) --port $(PORT) --api-port $(API_PORT)

# Production profile: PostgreSQL warehouse and Dagster instance storage, PARALLEL station ingests.
hub: $(STAMP)
	@test -n "$$ENTERONCE_WAREHOUSE_URL" || { echo "set ENTERONCE_WAREHOUSE_URL (postgresql+psycopg://user@host/db)"; exit 2; }
	@test -n "$$ENTERONCE_INSTANCE_DB" || { echo "set ENTERONCE_INSTANCE_DB (postgresql://user@host/dagster)"; exit 2; }
	$(BIN)/enteronce hub --host $(HOST) --port $(PORT) --api-port $(API_PORT) --parallel $(PARALLEL)

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

bench-daemon: $(STAMP)
	$(BIN)/python benchmarks/daemon.py

bench-propagation: $(STAMP)
	$(BIN)/python benchmarks/propagation.py

bench-feeds: $(STAMP)
	$(BIN)/python benchmarks/feeds.py

bench-feeds-api: $(STAMP)
	$(BIN)/python benchmarks/feeds_api.py

# The first publication of N resolved records (ROWS; WAREHOUSE=postgresql for PostgreSQL).
bench-publication: $(STAMP)
	$(BIN)/python benchmarks/publication.py --rows $(or $(ROWS),1000000) $(if $(filter postgresql,$(WAREHOUSE)),--postgresql)

# The front desk under 20 clients: /v1/match, /v1/search, memory and consistency with batch (RECORDS).
bench-match-api: $(STAMP)
	$(BIN)/python benchmarks/match_api.py --records $(or $(RECORDS),1000000)

bench-report: $(STAMP)
	$(BIN)/python benchmarks/report.py

bench-quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py

# The whole `enteronce run` from empty, then a 10k drop: time and peak memory per phase (RECORDS, STATIONS, WAREHOUSE).
bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py --records $(or $(RECORDS),1000000) --stations $(or $(STATIONS),40) --warehouse $(or $(WAREHOUSE),sqlite)

# The scale curve: bench-pipeline at each of SIZES (PostgreSQL), fitted growth per phase, extrapolated.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale_curve.py --records $(or $(SIZES),250000$(,)500000$(,)1000000) --warehouse $(or $(WAREHOUSE),postgresql) --out benchmarks/.cache/scale_$(or $(WAREHOUSE),postgresql).json --resume

bench-resolution: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/resolution.py

bench-accuracy: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf data/demo
