# ai-ml-pipeline: thin, named targets; each calls one script or one tool.
# With pixi on PATH they run in the pixi environment ($(PIXI_ENV)); without it, in a pip venv
# built from requirements/lock.txt and cached outside the clone (scripts/bootstrap_venv.py).

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
PIXI_ENV ?= default
ARGS ?=

# ultralytics' and matplotlib's environment is set by the programs themselves, from their settings
# (service_kit.thirdparty.configure_ultralytics), not here: one place, one default.
export MPLBACKEND := Agg
export PYTHONUNBUFFERED := 1

ifneq ($(shell command -v pixi 2>/dev/null),)
  ENSURE_ENV := pixi install --environment $(PIXI_ENV)
  RUN := pixi run --environment $(PIXI_ENV)
else
  # The clone's own .venv (its packages, editable) over a shared venv of the lock's packages.
  VENV := $(CURDIR)/.venv
  ENSURE_ENV := $(PYTHON) scripts/bootstrap_venv.py ensure
  RUN = env PATH="$(VENV)/bin:$$PATH" VIRTUAL_ENV="$(VENV)"
endif

# System packages the test suite uses (browser, Prometheus, video tools, PostgreSQL server, HAProxy); installed when missing.
TEST_SYSTEM_PACKAGES := chromium prometheus ffmpeg postgresql tmux haproxy

.PHONY: help install lock validate validate-cuda download-models test test-simd lint format run-pose run-vram \
	run-all stop-all dev-session bench bench-pose-engine bench-pose-backends bench-pose-service bench-checkpoint \
	bench-swap bench-training bench-estimate bench-decode-checks bench-multiview gpu-check observe fleet-targets \
	compose-up compose-down clean run-fleet stop-fleet bench-fleet

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: ## create or update the environment (pixi, else a cached pip venv from requirements/lock.txt)
	@$(ENSURE_ENV)

lock: ## regenerate requirements/lock.txt from pixi.toml (and pixi.lock where pixi is installed)
	$(PYTHON) scripts/lock.py
	@if command -v pixi >/dev/null; then pixi lock; fi

validate: install ## check that this machine can run the product (ARGS=--json for JSON)
	@$(RUN) python scripts/validate_env.py $(ARGS)

validate-cuda: install ## like validate, and fail without a usable CUDA GPU
	@$(RUN) python scripts/validate_env.py --require-gpu $(ARGS)

download-models: install ## fetch yolo11n-pose.pt into models/ (needs internet)
	@$(RUN) python scripts/download_models.py

test: install ## run the whole test suite (installs the system packages its tests use when missing)
	@bash scripts/system_deps.sh $(TEST_SYSTEM_PACKAGES)
	@$(RUN) python -m pytest $(ARGS)

test-simd: install ## unit tests again with numpy's AVX-512, then also AVX2, kernels off (other CPUs' paths)
	@for level in avx512 avx2; do \
		features="$$($(RUN) python scripts/simd_features.py $$level)"; \
		echo "unit tests with NPY_DISABLE_CPU_FEATURES=\"$$features\""; \
		[ -z "$$features" ] || NPY_DISABLE_CPU_FEATURES="$$features" $(RUN) python scripts/simd_features.py --check || exit 1; \
		NPY_DISABLE_CPU_FEATURES="$$features" $(RUN) python -m pytest tests/unit -q -p no:cacheprovider $(ARGS) || exit 1; \
	done

lint: install ## ruff (lint + format check) and mypy on the packages
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) python -m mypy

format: install ## format and autofix with ruff
	@$(RUN) ruff format .
	@$(RUN) ruff check --fix .

run-pose: install ## serve pose_analyzer on port 8001 (foreground)
	@$(RUN) python -m pose_analyzer

run-vram: install ## serve gpu_optimizer on port 8002 (foreground)
	@$(RUN) python -m gpu_optimizer

run-all: install ## start both services in the background (PIDs and logs under logs/), wait until healthy
	@$(RUN) python scripts/services.py start

stop-all: ## stop exactly the services run-all started
	@$(PYTHON) scripts/services.py stop

dev-session: install ## tmux session with windows pose, vram, monitor
	@bash scripts/dev_session.sh

bench: bench-pose-engine bench-pose-backends bench-pose-service bench-checkpoint bench-swap bench-training bench-estimate bench-decode-checks bench-triangulation bench-association bench-multiview bench-fleet ## every benchmark; each prints one JSON line last

bench-pose-engine: install ## engine overhead vs inference on real frames
	@$(RUN) python benchmarks/pose_engine.py $(ARGS)

.PHONY: bench-triangulation
bench-triangulation: install ## 3D cost of one 4-camera group (triangulate + analyse) vs detecting its 4 frames
	@$(RUN) python benchmarks/triangulation.py $(ARGS)

.PHONY: bench-association
bench-association: install ## multi-person 3D (association, triangulation, ids) of a YOLO group vs detecting it
	@$(RUN) python benchmarks/association.py $(ARGS)

bench-pose-backends: install ## per-frame cost of MediaPipe and YOLO (ONNX single vs batched)
	@$(RUN) python benchmarks/pose_backends.py $(ARGS)

bench-pose-service: install ## the pose service under 1, 4 and 16 WebSocket clients vs the bare backend loop
	@$(RUN) python benchmarks/pose_service.py $(ARGS)

bench-checkpoint: install ## checkpoint save/load vs torch.save and raw disk
	@$(RUN) python benchmarks/checkpoint.py $(ARGS)

bench-swap: install ## tensor swapper throughput vs plain copies
	@$(RUN) python benchmarks/swap.py $(ARGS)

bench-training: install ## training kit vs a plain loop; resume time and lost steps after a SIGKILL
	@$(RUN) python benchmarks/training.py $(ARGS)

bench-estimate: install ## seconds and peak RSS to estimate the 7B preset with each sharding option
	@$(RUN) python benchmarks/estimate.py $(ARGS)

gpu-check: install ## every GPU test, estimates vs the CUDA allocator, real OOM search, pinned benchmarks; one JSON
	@$(RUN) python scripts/gpu_check.py $(ARGS)

bench-decode-checks: install ## cost of the truncated-JPEG check in decode_frame (checked vs unchecked)
	@$(RUN) python benchmarks/decode_checks.py $(ARGS)

REPLICAS ?= 3
run-fleet: install ## HAProxy + PostgreSQL + REPLICAS pose_analyzer replicas on this machine (state in .cache/fleet)
	@bash scripts/system_deps.sh haproxy postgresql
	@$(RUN) python scripts/fleet.py start --replicas $(REPLICAS) $(ARGS)

stop-fleet: ## stop exactly the processes run-fleet started
	@$(PYTHON) scripts/fleet.py stop $(ARGS)

bench-fleet: install ## 4 streams via HAProxy vs direct; failover time and lost reps over SIGKILLs of replicas
	@bash scripts/system_deps.sh haproxy postgresql
	@$(RUN) python benchmarks/fleet.py $(ARGS)

bench-multiview: install ## a 4-camera 3D session through the service vs the same 4 streams in 2D
	@$(RUN) python benchmarks/multiview_service.py $(ARGS)

observe: ## Prometheus from the local install against the running services (make run-all first)
	@bash scripts/observe.sh

fleet-targets: ## Prometheus targets of every box: HOSTS="box1 box2" or INVENTORY=file (docs/fleet-observability.md)
	@if [ -n "$(INVENTORY)" ]; then $(PYTHON) scripts/fleet_targets.py --inventory "$(INVENTORY)"; \
	elif [ -n "$(HOSTS)" ]; then $(PYTHON) scripts/fleet_targets.py --hosts "$(HOSTS)"; \
	else echo 'usage: make fleet-targets HOSTS="box1 box2"  or  INVENTORY=path (docs/fleet-observability.md)' >&2; exit 2; fi

compose-up: ## both services, Prometheus and Grafana with Docker Compose
	docker compose -f docker/compose.yml up -d --build

compose-down: ## stop what compose-up started
	docker compose -f docker/compose.yml down

clean: ## remove caches, logs and build leftovers in the clone (the venv cache stays)
	rm -rf .cache logs .pytest_cache .mypy_cache .ruff_cache build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
