# Setup and entry points. Every target is idempotent: a second run reuses the virtualenv, the
# converted model and the sandbox image.
SHELL := /bin/bash
VENV ?= .venv
PROFILE ?= cpu
MODEL_DIR ?= $(HOME)/.cache/flowpo/models/SmolLM2-135M-Instruct
IMAGE ?= flowpo-sandbox:latest
PYTEST_ARGS ?=
# Two workers: on CI's 2 cores the suite spends about a third of its time waiting (engines and
# Ray starting, sandboxes, subprocesses). TEST_WORKERS=0 runs it in one process.
# --durations: CI's log then says which tests its time went to.
TEST_WORKERS ?= 2

.PHONY: setup venv model docker image demo test lint clean-runs

setup: venv model image

venv: $(VENV)/.flowpo-$(PROFILE)
$(VENV)/.flowpo-$(PROFILE): pyproject.toml scripts/install-venv.sh scripts/constraints.txt
	scripts/install-venv.sh $(VENV) $(PROFILE)
	touch $@

model: venv
	$(VENV)/bin/flowpo prepare-model --dest $(MODEL_DIR)

docker:
	scripts/start-docker.sh

image: docker
	scripts/build-sandbox-image.sh $(IMAGE)

demo: setup
	$(VENV)/bin/flowpo train examples/local.yaml

test: setup lint
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=30 $(PYTEST_ARGS)

# Pyflakes, pycodestyle, import order and bugbear (ruff.toml); seconds, so before the tests.
lint: venv
	$(VENV)/bin/ruff check .

clean-runs:
	rm -rf runs/
