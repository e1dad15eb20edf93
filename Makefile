# Conveyor's front door. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
TESTBED := PYTHONPATH=hack $(PY) -m testbed
PYTEST_ARGS ?=
SOAK_ARGS ?=

.PHONY: help
help: ## List every target with what it does
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml examples/workers/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,operator,cli,kafka]'
	$(PY) -m pip install --quiet --no-deps -e examples/workers
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the Python environment (.venv) with the dev tools

.PHONY: testbed-deps
testbed-deps: ## Install the system packages the test bed needs (rabbitmq-server, Java and Maven for Kafka, via apt)
	@hack/install-deps.sh

.PHONY: testbed-build
testbed-build: ## Build (or find cached) etcd, the Kubernetes binaries, helm, the object store and Kafka's jars, in ~/.cache/conveyor
	@hack/build-testbed.sh >/dev/null
	@hack/build-s3server.sh >/dev/null
	@hack/build-kafka.sh >/dev/null

.PHONY: testbed-up
testbed-up: venv testbed-deps ## Start RabbitMQ, the object store, Kafka and the Kubernetes control plane with its node agent (idempotent)
	@$(TESTBED) up

.PHONY: testbed-down
testbed-down: ## Stop every part of the test bed; nothing of it keeps running or listening
	@if [ -x $(PY) ]; then $(TESTBED) down; fi

.PHONY: testbed-purge
testbed-purge: ## Stop the test bed and delete its state (.testbed/)
	@if [ -x $(PY) ]; then $(TESTBED) down --purge; fi

.PHONY: testbed-env
testbed-env: ## Print export lines for KUBECONFIG, CONVEYOR_AMQP_URL (and CONVEYOR_AMQPS_URL with its CONVEYOR_AMQP_CA_FILE), CONVEYOR_S3_*, CONVEYOR_KAFKA_BOOTSTRAP_SERVERS and kubectl's PATH (eval them)
	@$(TESTBED) env

.PHONY: testbed-status
testbed-status: ## Show which parts of the test bed are running
	@$(TESTBED) status

.PHONY: test
test: testbed-up ## Run every test (unit, integration, e2e) against the test bed
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Run the unit tests only (no test bed needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: crds
crds: venv ## Generate the CRDs in crds/ and the chart's copy from the pydantic models
	$(PY) -m conveyor.crdgen --chart charts/conveyor/templates crds

.PHONY: docs
docs: venv ## Generate docs/api.md (the API reference) from the pydantic models
	$(PY) -m conveyor.apidocs > docs/api.md

HELM = $$(hack/build-helm.sh)/helm

.PHONY: helm-lint
helm-lint: ## Lint the Helm chart (charts/conveyor) with the pinned helm
	@$(HELM) lint --strict charts/conveyor --set amqp.url=amqp://localhost

.PHONY: images
images: ## Build the operator, worker and example images with buildah (base from debootstrap, cached) into ~/.cache/conveyor/images/*.tar, and print their sizes
	@hack/build-images.sh

.PHONY: kind-up
kind-up: ## With Docker and kind: a kind cluster (kind-config.yaml) with the images and the chart
	@hack/kind.sh up

.PHONY: kind-e2e
kind-e2e: venv ## With Docker and kind: kind-up, then the e2e tests against that cluster
	@hack/kind.sh e2e

.PHONY: lint
lint: venv ## Check style, types and layers: ruff, mypy --strict, import-linter
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/mypy
	MYPYPATH=hack $(VENV)/bin/mypy --strict -p testbed
	MYPYPATH=hack:operator $(VENV)/bin/mypy --strict -p soak
	$(VENV)/bin/lint-imports

.PHONY: check
check: lint test-unit ## Lint, types, layer contracts and the unit tests: what CI runs first

.PHONY: bench
bench: testbed-up ## Run the benchmarks in bench/ (engine, installs, messaging, operator, peers: Conveyor vs Celery, store) and print their tables
	@eval "$$($(TESTBED) env)"; export PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PYTHONPATH=hack; \
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) "$$b" || exit 1; done

.PHONY: soak
soak: testbed-up ## Fault soak: 5 runs x 10,000 items while parts are SIGKILLed; fails on lost/stuck/double-applied (SOAK_ARGS="--runs 3 --items 2000 --faults ...")
	@PYTHONPATH=hack $(PY) -m soak $(SOAK_ARGS)

.PHONY: demo
demo: testbed-up ## The main job: bring everything up and run the example workflow end to end
	@hack/demo.sh
