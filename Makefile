# clinic.infra: the commands users and CI run. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
SCENARIOS := $(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
SCENARIO ?=
COLLECTION := .ansible/collections/ansible_collections/clinic/infra/MANIFEST.json

.PHONY: help test lint unit mongosh molecule bench bench-hardening bench-inventory bench-restore bench-deploy bench-lab lab lab-down lab-deploy lab-failover lab-rotate images docker clean-harness venv docs

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: ## Everything CI runs: lint, unit tests, every Molecule scenario; then the time of each stage
	MAKE="$(MAKE)" bash tests/harness/stages.sh lint unit molecule

# uv installs the pinned closure in seconds where pip takes minutes (a fresh clone on CI makes a new
# virtualenv every run); it comes from PyPI too, pinned here.
UV_VERSION := 0.13.10
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python -r requirements.txt
	touch $@

# The checkout is the collection clinic.infra; installed where ansible.cfg, molecule and ansible-lint
# look for it, again whenever a file of the collection changes (new files included).
$(COLLECTION): $(VENV)/.installed galaxy.yml $(shell find roles plugins meta -type f -not -path '*/__pycache__/*' 2>/dev/null)
	ansible-galaxy collection install --force --offline . -p .ansible/collections >/dev/null

venv: $(VENV)/.installed $(COLLECTION) ## Create the virtualenv and install the collection from this checkout

lint: venv ## ansible-lint (production profile), yamllint, ruff
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .

# Worker processes of the unit tests (pytest-xdist), each taking a whole file at a time: the
# files' module fixtures (a moto server, a running double) start once per file, as without it.
UNIT_JOBS ?= 2
unit: venv mongosh ## Python tests that need no containers, UNIT_JOBS files at a time
	pytest -n $(UNIT_JOBS) --dist loadfile tests

# The real mongosh client (npm, pinned in the script) that the MongoDB double's contract tests drive;
# kept under the virtualenv, which git and every linter already ignore.
MONGOSH := $(VENV)/mongosh/node_modules/.bin/mongosh
$(MONGOSH): tests/harness/install-mongosh.sh
	MONGOSH_PREFIX=$(VENV)/mongosh bash tests/harness/install-mongosh.sh
	touch $@

mongosh: $(MONGOSH) ## Install the pinned mongosh from npm into .venv/mongosh

docs: venv ## Regenerate the roles' README variable tables from their argument specs
	python -m tests.harness.role_docs

docker: ## Install and start a Docker engine when none answers
	bash tests/harness/ensure-docker.sh

images: docker ## Build the test host images (cached by a hash of their recipe)
	bash tests/harness/build-images.sh

clean-harness: docker ## Remove containers and networks left by an earlier run
	bash tests/harness/cleanup.sh

# Two scenarios at a time (MOLECULE_JOBS), in this order: the longest, mongodb_replicaset, beside
# the short ones, and deploy (load under a rolling deploy) last, once the failover tests are done.
MOLECULE_JOBS ?= 2
# Molecule's own install of the collection is off (prerun: false); the scenarios use make venv's.
molecule bench-deploy: export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.ansible/collections
SCENARIO_ORDER := mongodb_replicaset base_hardening cloudwatch_agent app_node backup_cron deploy
molecule: venv images clean-harness ## One scenario (SCENARIO=name) or all of them, MOLECULE_JOBS at a time
	python -m tests.harness.run_scenarios --jobs $(MOLECULE_JOBS) \
	  $(or $(SCENARIO),$(filter $(SCENARIOS),$(SCENARIO_ORDER)) $(filter-out $(SCENARIO_ORDER),$(SCENARIOS)))

bench: bench-hardening bench-inventory bench-restore bench-deploy bench-lab ## Every benchmark; each prints key=value figures on its last line

bench-hardening: venv images clean-harness ## Lynis before/after, converge and no-op re-run times
	bash tests/bench/hardening.sh

bench-deploy: venv images clean-harness ## Rolling deploy 1.0.0 -> 2.0.0 under 60 requests/s through HAProxy
	bash tests/bench/deploy.sh

bench-lab: venv docker ## make lab from nothing, then the no-op re-run: times, changed, tasks per second
	CLINIC_IMAGE_RELEASES=bookworm bash tests/harness/build-images.sh
	python -m tests.bench.lab

bench-inventory: venv ## ansible-inventory time for 1,000 instances in moto
	python -m tests.bench.inventory

bench-restore: venv ## Backup of 200 MB in the MongoDB double, oplog slice, restore drill to a point in time
	python -m tests.bench.restore

lab: venv docker ## The whole platform on local containers (a second run changes nothing)
	CLINIC_IMAGE_RELEASES=bookworm bash tests/harness/build-images.sh
	python -m lab up

lab-down: venv docker ## Remove the lab: its containers, network, moto server and lab/.state
	python -m lab down

lab-rotate: venv ## Renew every certificate of the running lab under API load: failed requests, latency
	python -m lab rotate

lab-failover: venv ## Stop, then freeze, the running lab's primary under API load: writes, failed, lost, election_s
	python -m lab failover

VERSION ?=
lab-deploy: venv ## Rolling deploy of VERSION=... (1.0.0, 2.0.0, broken 3.0.0 or 4.0.0) to the running lab
	@test -n "$(VERSION)" || { echo "make lab-deploy: give the release, e.g. make lab-deploy VERSION=2.0.0" >&2; exit 2; }
	python -m lab deploy $(VERSION)
