# ruleop developer entry points. `make help` lists them.
SHELL := /bin/bash
# Cargo's build output lives outside the clone so fresh CI clones reuse it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ruleop/target
CARGO ?= cargo
RULEOP := $(CARGO_TARGET_DIR)/debug/ruleop
CP_BIN := target/controlplane/controlplane
CP_KUBECONFIG := target/controlplane/kubeconfig
FAULTPROXY_BIN := target/controlplane/faultproxy

.PHONY: help build lint test unit check-rules controlplane cluster schema

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build the ruleop binary
	$(CARGO) build --bin ruleop

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

controlplane: ## build the local control plane (our envtest) and the fault-injection proxy
	cd tests/controlplane && go build -ldflags='-s -w' -o ../../$(CP_BIN) .
	cd tests/faultproxy && go build -ldflags='-s -w' -o ../../$(FAULTPROXY_BIN) .

cluster: controlplane ## run the local control plane in the foreground
	$(CP_BIN) --kubeconfig $(CP_KUBECONFIG)

schema: build ## regenerate rules/rule.schema.json
	$(RULEOP) schema > rules/rule.schema.json

check-rules: build ## validate the reference rules
	$(RULEOP) check rules/

unit: ## unit tests only (no cluster)
	$(CARGO) test --lib --bins

test: lint controlplane check-rules ## the whole suite: lint, unit, golden and cluster tests
	$(CARGO) test --all-targets

# --- deployment and demo (deploy/, hack/) ---
.PHONY: deploy-sync deploy-check demo
DEPLOY_KUBECONFIG ?= $(or $(KUBECONFIG),$(HOME)/.kube/config)

deploy-sync: build ## regenerate deploy/rules/ and deploy/rbac/clusterrole.yaml from rules/
	RULEOP=$(RULEOP) hack/deploy-sync.sh

deploy/rbac/clusterrole.yaml: build ## regenerate the operator's ClusterRole (ruleop rbac --rules rules)
	$(RULEOP) rbac --rules rules > $@

deploy-check: build ## deploy/ in sync, renders, and passes kubectl apply -k --dry-run=server on $(KUBECONFIG)
	RULEOP=$(RULEOP) KUBECONFIG=$(DEPLOY_KUBECONFIG) hack/deploy-check.sh

demo: ## build, start a local control plane + ruleop, apply samples/, live summary (DEMO_ONCE=1: once)
	hack/demo.sh

# --- benchmarks (bench/, benches/, docs/benchmarks.md) ---
.PHONY: bench
BENCH_TARGET := $(HOME)/.cache/ruleop/bench-target
BENCH_VENV := target/bench/venv

bench: controlplane ## planner Criterion bench + ruleop vs kube-rs, controller-runtime, Kopf on the local control plane (QUICK=1: ~5 min)
	$(CARGO) build --release --bin ruleop
	cd bench/peers/kube-rs && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release
	cd bench/peers/go-controller-runtime && go build -o $(BENCH_TARGET)/go-controller-runtime .
	test -x $(BENCH_VENV)/bin/kopf || { python3 -m venv $(BENCH_VENV) && $(BENCH_VENV)/bin/pip install -q -r bench/peers/kopf/requirements.txt; }
	$(CARGO) bench --bench planner -- $(if $(filter 1,$(QUICK)),--warm-up-time 1 --measurement-time 2,)
	QUICK=$(QUICK) CONTROLPLANE=$${CONTROLPLANE:-$(CURDIR)/$(CP_BIN)} $(BENCH_VENV)/bin/python bench/run.py
