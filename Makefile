# Two commands from a fresh clone: `make demo` (main job on the embedded default) and `make test`.
PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)

.PHONY: demo test ui bench bench-resolution bench-propagation bench-feeds bench-feeds-api bench-report bench-quality install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/enteronce run

test: $(STAMP)
	$(BIN)/python -m pytest -q

ui: $(STAMP)
	@test -f data/demo/stations.yaml || $(BIN)/enteronce simulate --out data/demo
	VIRTUAL_ENV=$(CURDIR)/$(VENV) PATH=$(CURDIR)/$(BIN):$$PATH ENTERONCE_CONFIG=$${ENTERONCE_CONFIG:-data/demo} dg dev

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

bench-propagation: $(STAMP)
	$(BIN)/python benchmarks/propagation.py

bench-feeds: $(STAMP)
	$(BIN)/python benchmarks/feeds.py

bench-feeds-api: $(STAMP)
	$(BIN)/python benchmarks/feeds_api.py

bench-report: $(STAMP)
	$(BIN)/python benchmarks/report.py

bench-quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py

bench-resolution: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/resolution.py

clean:
	rm -rf data/demo data/dagster_home
