# certmint: `make run` runs the operator (against a local control plane unless KUBECONFIG is set);
# `make test` runs the whole suite. Everything they need is installed by the targets below.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := .cache/bin
CLUSTER_DIR := .cache/cluster
export CERTMINT_BIN_DIR := $(abspath $(BIN))
export PATH := $(abspath $(BIN)):$(abspath $(VENV))/bin:$(PATH)

.PHONY: run test unit lint lock venv tools control-plane-tools system-deps cluster cluster-down bench clean image image-test

# The venv installs exactly the locked versions (with their hashes) that CI tested, then
# certmint itself without resolving anything again. `make lock` refreshes the lock files
# from pyproject.toml: requirements.lock for development and tests, and
# requirements-operator.lock for the operator alone (what the image installs).
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 -q

lock: venv
	$(UV_COMPILE) --extra operator --extra integrations --extra test -o requirements.lock
	$(UV_COMPILE) --extra operator -o requirements-operator.lock

# etcd, kube-apiserver and kubectl for the control plane; helm too for the tests.
control-plane-tools:
	hack/build-tools.sh etcd k8s

tools:
	hack/build-tools.sh

system-deps:
	hack/install-system-deps.sh

cluster: venv control-plane-tools
	@$(PY) hack/localcluster.py up --dir $(CLUSTER_DIR)

cluster-down: venv
	@$(PY) hack/localcluster.py down --dir $(CLUSTER_DIR)

# The operator in the foreground. With KUBECONFIG set it uses that cluster; otherwise it
# starts (or reuses) the local control plane.
run: venv control-plane-tools
	@if [ -z "$$KUBECONFIG" ]; then \
		eval "$$($(PY) hack/localcluster.py up --dir $(CLUSTER_DIR))" || exit 1; \
		echo "In another terminal: export KUBECONFIG=$$KUBECONFIG PATH=$(abspath $(BIN)):\$$PATH"; \
	fi; \
	kubectl apply --server-side --force-conflicts -f crds/ && \
	exec $(VENV)/bin/certmint operator --cluster-resource-namespace default

# Layer contracts, types (strict on the pure core, see pyproject.toml) and ruff's bug checks.
lint: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy operator/certmint
	$(VENV)/bin/ruff check operator tests bench hack

unit: venv
	$(PY) -m pytest tests/unit -q

# The operator image as an OCI archive, dist/certmint-<version>.oci.tar, built from Debian's
# packages and the locked wheels without a container engine (hack/image/build.py says how).
# It needs root (mmdebstrap, chroot): sudo when not run as root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
image: venv system-deps
	$(SUDO) $(PY) hack/image/build.py

# The image tests alone (validate the archive, run it under runc, rebuild it to the same
# digest); `make test` runs them too, as part of the whole suite.
image-test: venv control-plane-tools system-deps
	$(PY) -m pytest tests/image -q

# pytest exits 5 when it collected nothing: that is a broken suite, so say so and fail.
test: venv tools system-deps lint
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc = 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: venv control-plane-tools
	$(PY) -m bench

clean: cluster-down
	rm -rf $(VENV) .cache/bin
