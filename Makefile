# Two commands matter: `make repro` (the whole pipeline) and `make test`.
# Both create .venv from requirements.lock on first use; nothing else needs installing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_DISABLE_TELEMETRY=true DBT_SEND_ANONYMOUS_USAGE_STATS=False DVC_NO_ANALYTICS=1
HOST ?= 127.0.0.1
PORT ?= 5000

SERVE_PORT ?= 5001

.PHONY: setup repro test lint bench bench-clean bench-chain bench-region bench-serving serve rollback mlflow-ui docs help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(VENV)/.installed  ## create .venv with the exact pins of requirements.lock

$(VENV)/.installed: requirements.lock requirements/bootstrap.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/bootstrap.txt
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet -r requirements.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet --no-deps -e .
	touch $@

repro: setup  ## run the whole pipeline with dvc repro (embedded defaults, no credentials)
	$(RUN) dvc repro

# The whole suite in parallel (pytest-xdist): one worker per core, each module on one worker
# (tests/conftest.py), the shared builds made once under a file lock. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto

test: setup  ## lint, type-check and run the whole test suite (TEST_WORKERS=auto)
	$(RUN) ruff check pipelines tests benchmarks
	$(RUN) mypy pipelines
	$(RUN) python -m pytest -n $(TEST_WORKERS) --dist loadscope

lint: setup  ## ruff + mypy only
	$(RUN) ruff check pipelines tests benchmarks
	$(RUN) mypy pipelines

bench: setup  ## benchmark generate+clean at default and 10x scale (prints figures)
	$(RUN) python -m pipelines.bench

bench-clean: setup  ## clean vs pandas reference vs Polars parse floor at scales 1 and 10 (prints figures)
	$(RUN) python benchmarks/bench_clean.py --scales 1 10

SCALES ?= 1 10
bench-chain: setup  ## whole chain generate..train per scale: wall s, peak RSS, raw rows (SCALES="1 10 100")
	$(RUN) python -m pipelines.bench_chain --scales $(SCALES)

bench-region: setup  ## scale 100 (the region), generate -> promote, per stage wall s / peak RSS (~45 min)
	$(RUN) python -m pipelines.bench_chain --scales 100 --stages generate clean warehouse features train evaluate monitor promote

serve: setup  ## serve the champion on http://$(HOST):$(SERVE_PORT)/invocations (Ctrl-C stops)
	$(RUN) python -m pipelines serve --host $(HOST) --port $(SERVE_PORT)

rollback: setup  ## make the 'previous' registered version the champion again
	$(RUN) python -m pipelines rollback

bench-serving: setup  ## latency and throughput of the served champion (loopback, bounded loops)
	$(RUN) python -m pipelines.bench_serving

mlflow-ui: setup  ## MLflow UI over the project's store on http://$(HOST):$(PORT)
	$(RUN) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host $(HOST) --port $(PORT) --workers 1

docs: setup  ## dbt docs (lineage) on http://$(HOST):8080
	$(RUN) dbt docs generate --project-dir dbt --profiles-dir dbt
	$(RUN) dbt docs serve --project-dir dbt --profiles-dir dbt --host $(HOST) --port 8080 --no-browser
