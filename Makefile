# purebench: `make demo` runs the main job, `make test` runs the test suite; both install first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Real CIFAR data and pretrained weights, when the shared folder sits beside the checkout.
SHARED_DATA := $(abspath ../shared/data)
export PUREBENCH_DATA ?= $(if $(wildcard $(SHARED_DATA)/README.md),$(SHARED_DATA),$(CURDIR)/data)

.PHONY: install demo test wheel-check lint clean

install: $(VENV)/.installed

# requirements.lock pins every package (torch==2.14.1/torchvision==0.29.1 included);
# torchattacks goes in without deps because it pins an old requests.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==24.3.1
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1
	$(PY) -m pip install -q --no-deps robustbench==1.1.1  # classifier=robustbench; it pins timm==1.0.9
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: install
	$(PY) -m purebench

test: install
	$(PY) -m ruff check purebench tests benchmarks examples
	$(PY) -m pytest -q

# The wheel, installed outside the checkout, runs a job and composes a recipe (.ci/wheel_check.sh, ~40 s).
wheel-check: install
	.ci/wheel_check.sh

lint: install
	$(PY) -m ruff check purebench tests benchmarks examples
	$(PY) -m ruff format --check purebench tests benchmarks examples

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
