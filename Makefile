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
# The same app synthesized with the saga as an Express workflow (cdk.json context workflow=express).
TEMPLATE_EXPRESS := cdk.out.express/Orderflow.template.json
PYTEST_WORKERS ?= 2

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := true
export CDK_CLI_NOTICES := false
# No AWS account is needed offline: fake credentials and a region for the embedded AWS.
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCOUNT_ID_ENDPOINT_MODE := disabled

.PHONY: help install local test synth deploy diff clean bench cost soak scan

help:
	@echo "make local   serve the API on http://127.0.0.1:$(PORT) against an embedded AWS (no account, no Docker)"
	@echo "make test    run the whole test suite offline (security scanners, then pytest; ends with the reliability figures)"
	@echo "make soak    the long reliability variants (more orders, more faults, more examples)"
	@echo "make cost    cost per 1M orders from an offline workload, Standard and Express profiles (--json: ARGS=--json)"
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

# checkov and cfn-lint pin their own dependency trees (some clash with the runtime's pins): own venv.
SCAN_VENV := .venv-scan
$(SCAN_VENV)/.installed: requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SCAN_VENV)/bin/python -m pip install --quiet -r requirements-scan.txt
	touch $@

install: $(VENV)/.installed node_modules/.installed

# Synthesis needs no account: AWS_ACCESS_KEY_ID etc. are not read, the stack is environment-agnostic.
SOURCES := app.py cdk.json $(shell find stacks functions statemachines -type f -not -path '*/__pycache__/*' 2>/dev/null)

$(TEMPLATE): install $(SOURCES)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) synth --quiet --no-version-reporting --no-notices > /dev/null
	@touch $@

$(TEMPLATE_EXPRESS): install $(SOURCES)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) synth --quiet --no-version-reporting --no-notices \
		-c workflow=express --output cdk.out.express > /dev/null
	@touch $@

synth: $(TEMPLATE) $(TEMPLATE_EXPRESS)

# WORKFLOW=express serves the Express profile.
WORKFLOW ?= standard
LOCAL_TEMPLATE := $(if $(filter express,$(WORKFLOW)),$(TEMPLATE_EXPRESS),$(TEMPLATE))

local: $(LOCAL_TEMPLATE)
	$(PY) -m offline serve --template $(LOCAL_TEMPLATE) --port $(PORT) --aws-port $(AWS_PORT)

TEST_ENV := ORDERFLOW_TEMPLATE=$(CURDIR)/$(TEMPLATE) ORDERFLOW_TEMPLATE_EXPRESS=$(CURDIR)/$(TEMPLATE_EXPRESS)

test: scan
	$(TEST_ENV) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

soak: $(TEMPLATE) $(TEMPLATE_EXPRESS)
	$(TEST_ENV) ORDERFLOW_SOAK=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "slow"

# Security scanners on the synthesized templates and the ASL (cdk-nag already ran inside every synth).
scan: $(TEMPLATE) $(TEMPLATE_EXPRESS) $(SCAN_VENV)/.installed
	PATH="$(CURDIR)/$(SCAN_VENV)/bin:$(CURDIR)/node_modules/.bin:$$PATH" scripts/scan $(TEMPLATE) $(TEMPLATE_EXPRESS)

cost: $(TEMPLATE) $(TEMPLATE_EXPRESS)
	$(PY) -m benchmarks.cost --template $(TEMPLATE) --express-template $(TEMPLATE_EXPRESS) $(ARGS)

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
	rm -rf cdk.out cdk.out.express .pytest_cache .hypothesis
