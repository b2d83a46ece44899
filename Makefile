# orderflow: every command a developer or CI needs. The project installs everything it uses itself:
# Python packages into .venv (pyproject.toml), node tools into node_modules (package.json / package-lock.json).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
PORT ?= 3000
AWS_PORT ?= 4566
TEMPLATE := cdk.out/Orderflow.template.json
PYTEST_WORKERS ?= 2

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := true
export CDK_CLI_NOTICES := false
# No AWS account is needed offline: fake credentials and a region for the embedded AWS.
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCOUNT_ID_ENDPOINT_MODE := disabled

.PHONY: help install local test synth deploy diff clean bench

help:
	@echo "make local   serve the API on http://127.0.0.1:$(PORT) against an embedded AWS (no account, no Docker)"
	@echo "make test    run the whole test suite offline"
	@echo "make bench   time loading an aggregate at 100, 1,000 and 10,000 events, with and without snapshots"
	@echo "make synth   synthesize the CloudFormation template (cdk-nag runs on every synth)"
	@echo "make deploy  cdk deploy to the AWS account of your current credentials"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

# Synthesis needs no account: AWS_ACCESS_KEY_ID etc. are not read, the stack is environment-agnostic.
$(TEMPLATE): install app.py cdk.json $(shell find stacks functions statemachines -type f -not -path '*/__pycache__/*' 2>/dev/null)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) synth --quiet --no-version-reporting --no-notices > /dev/null
	@touch $@

synth: $(TEMPLATE)

local: $(TEMPLATE)
	$(PY) -m offline serve --template $(TEMPLATE) --port $(PORT) --aws-port $(AWS_PORT)

test: $(TEMPLATE)
	ORDERFLOW_TEMPLATE=$(CURDIR)/$(TEMPLATE) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

deploy: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) deploy $(CDK_ARGS)

diff: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) diff $(CDK_ARGS)

# A benchmark, not a test: prints a table (DynamoDB in moto, in-process; no account needed).
bench: $(VENV)/.installed
	$(PY) benchmarks/bench_cold_start.py
	$(PY) benchmarks/bench_relay.py
	$(PY) benchmarks/bench_event_store.py

clean:
	rm -rf cdk.out .pytest_cache .hypothesis
