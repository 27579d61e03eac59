# ruleop developer entry points. `make help` lists them.
SHELL := /bin/bash
# Cargo's build output lives outside the clone so fresh CI clones reuse it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ruleop/target
CARGO ?= cargo
RULEOP := $(CARGO_TARGET_DIR)/debug/ruleop
CP_BIN := target/controlplane/controlplane
CP_KUBECONFIG := target/controlplane/kubeconfig
FAULTPROXY_BIN := target/controlplane/faultproxy

.PHONY: help build lint test unit check-rules crds crds-check controlplane cluster schema

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build the ruleop binary
	$(CARGO) build --bin ruleop

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

controlplane: ## build the local control plane (our envtest) and the fault-injection proxy
	cd tests/controlplane && go build -ldflags='-s -w' -o ../../$(CP_BIN) .
	cd tests/faultproxy && go build -ldflags='-s -w' -o ../../$(FAULTPROXY_BIN) .

cluster: controlplane ## run the local control plane in the foreground
	$(CP_BIN) --kubeconfig $(CP_KUBECONFIG)

schema: build ## regenerate rules/rule.schema.json
	$(RULEOP) schema > rules/rule.schema.json

openapi-snapshot: controlplane ## regenerate crates/ruleop-schema/src/schema/builtin.json from the control plane's kube-apiserver
	CP_BIN=$(CP_BIN) hack/openapi-snapshot.sh

check-rules: build ## validate the reference rules against their CRDs, and their samples' children against their schemas
	$(RULEOP) check rules/ --crd crds/ --resource samples/

crds: build ## regenerate crds/ from the rules' spec.crd (ruleop crd --rule rules/X.yaml)
	RULEOP=$(RULEOP) hack/crds.sh

crds-check: build ## crds/ in sync with the rules' spec.crd
	RULEOP=$(RULEOP) hack/crds.sh --check

unit: ## unit tests only (no cluster), every crate of the workspace
	$(CARGO) test --workspace --lib --bins

# The layer crates under the runtime stay free of I/O crates; no import cycle inside a crate;
# no source file over 600 lines (see ARCHITECTURE.md).
.PHONY: layers-check
layers-check: ## the layers hold: no kube/hyper/tokio under the planner and the language, no cycles, small files
	@for c in ruleop-schema ruleop-lang ruleop-plan; do \
	  if $(CARGO) tree -p $$c -e normal --prefix none | grep -E '^(kube|kube-client|kube-core|hyper|hyper-util|tokio|tokio-util) '; then \
	    echo "$$c depends on an I/O crate (above)" >&2; exit 1; fi; done
	python3 hack/layers.py
	@big=$$(find src crates tests benches -name '*.rs' -print0 | xargs -0 wc -l | awk '$$2 != "total" && $$1 > 600'); \
	  if [ -n "$$big" ]; then echo "files over 600 lines:"; echo "$$big"; exit 1; fi >&2

test: lint layers-check controlplane check-rules crds-check ## the whole suite: lint, layers, unit, golden and cluster tests
	$(CARGO) test --workspace --all-targets

# A random fault schedule (tests/faults/faults_process/soak.rs) for as long as you like;
# `make test` runs a short one with a fixed seed. The seed is printed first and with the
# schedule on failure.
.PHONY: soak
SEED ?= $(shell date +%s)
MINUTES ?= 10
soak: controlplane ## random faults over many parents: SEED=N (default: the time), MINUTES=M (default 10), PARENTS=P per kind
	RULEOP_SOAK_SEED=$(SEED) RULEOP_SOAK_MINUTES=$(MINUTES) RULEOP_SOAK_PARENTS=$(PARENTS) \
	  $(CARGO) test --test faults faults_process::soak::a_random_fault_schedule -- --nocapture

# --- deployment and demo (deploy/, hack/) ---
.PHONY: deploy-sync deploy-check demo
DEPLOY_KUBECONFIG ?= $(or $(KUBECONFIG),$(HOME)/.kube/config)

deploy-sync: build ## regenerate crds/, deploy/rules/, deploy/rbac/clusterrole.yaml and charts/ruleop/files/ from rules/
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

# SCALE=1: ruleop and the kube-rs floor only, at SCALE_SIZES parents (default 1000,5000,10000):
# cold sync, idle window and create-to-ready at each size, printed as a growth table
# (target/bench/scale.json). Hours on 2 cores; run it on an idle machine.
bench: controlplane ## planner Criterion bench + ruleop vs kube-rs, controller-runtime, Kopf on the local control plane (QUICK=1: ~5 min; SCALE=1: growth to 10,000 parents)
	$(CARGO) build --release --bin ruleop
	cd bench/peers/kube-rs && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release
ifneq ($(SCALE),1)
	cd bench/peers/go-controller-runtime && go build -o $(BENCH_TARGET)/go-controller-runtime .
endif
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	test -x $(BENCH_VENV)/bin/kopf || $(BENCH_VENV)/bin/pip install -q -r bench/peers/kopf/requirements.txt
ifneq ($(SCALE),1)
	$(CARGO) bench --bench planner -- $(if $(filter 1,$(QUICK)),--warm-up-time 1 --measurement-time 2,)
endif
	QUICK=$(QUICK) SCALE=$(SCALE) CONTROLPLANE=$${CONTROLPLANE:-$(CURDIR)/$(CP_BIN)} \
	  RULEOP=$${RULEOP:-$(CARGO_TARGET_DIR)/release/ruleop} $(BENCH_VENV)/bin/python bench/run.py

# --- container image and Helm chart (Dockerfile, charts/ruleop, hack/image-*.sh) ---
.PHONY: image-bin image image-test chart-test install-check
# The image holds one static binary, built on the host: nothing is pulled from a registry.
# musl when its Rust target is installed (`rustup target add x86_64-unknown-linux-musl`, plus
# musl-tools), else glibc with crt-static. Symbols stripped; the image needs no debug info.
IMAGE_TRIPLE ?= $(shell rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl && command -v musl-gcc >/dev/null && echo x86_64-unknown-linux-musl || echo x86_64-unknown-linux-gnu)
IMAGE_BIN := $(CARGO_TARGET_DIR)/$(IMAGE_TRIPLE)/release/ruleop
IMAGE_CONTEXT := $(CARGO_TARGET_DIR)/image-context
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE ?= localhost/ruleop:$(VERSION)
PODMAN ?= podman
# Debian's podman: crun fails on these VMs, runc works.
PODMAN_RUNTIME ?= runc
HELM ?= $(or $(shell command -v helm 2>/dev/null),$(HOME)/.cache/ruleop/bin/helm)
HELM_VERSION ?= v3.22.0

image-bin: ## the static release binary the image carries (musl, or glibc with crt-static)
	CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_DEBUG=false \
	  $(if $(filter %-gnu,$(IMAGE_TRIPLE)),RUSTFLAGS='-C target-feature=+crt-static',) \
	  $(CARGO) build --release --locked --target $(IMAGE_TRIPLE) --bin ruleop
	@if readelf -l $(IMAGE_BIN) | grep -q 'program interpreter'; then echo "$(IMAGE_BIN) is not static" >&2; exit 1; fi

image: image-bin ## build the container image (IMAGE, default localhost/ruleop:VERSION) with podman, FROM scratch
	rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT)/rules
	cp $(IMAGE_BIN) $(IMAGE_CONTEXT)/ruleop
	cp rules/*.yaml $(IMAGE_CONTEXT)/rules/
	cp LICENSE $(IMAGE_CONTEXT)/LICENSE
	$(PODMAN) --runtime $(PODMAN_RUNTIME) build -f Dockerfile -t $(IMAGE) \
	  --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  $(IMAGE_CONTEXT)

image-test: image controlplane ## run the image against the local control plane (hack/image-test.sh)
	IMAGE=$(IMAGE) PODMAN="$(PODMAN) --runtime $(PODMAN_RUNTIME)" CP_BIN=$(CP_BIN) hack/image-test.sh

$(HELM):
	mkdir -p $(dir $(HELM))
	GOBIN=$(dir $(HELM)) go install -ldflags='-s -w' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

chart-test: build controlplane $(HELM) ## helm lint, template | apply --dry-run=server, install/upgrade/uninstall on the local control plane
	HELM=$(HELM) RULEOP=$(RULEOP) CP_BIN=$(CP_BIN) hack/chart-test.sh

install-check: build controlplane $(HELM) ## follow the README's install section word for word (hack/install-check.sh)
	HELM=$(HELM) RULEOP=$(RULEOP) CP_BIN=$(CP_BIN) IMAGE=$(IMAGE) hack/install-check.sh
