# Sluice: `make demo` runs the demo on the embedded broker; `make test` runs the test suite.
# Both install missing Debian packages first (as root, or through sudo when available).

SWIFT ?= swift
DEB_PACKAGES := librdkafka-dev libzstd-dev libsqlite3-dev libopenblas-dev libxxhash-dev libssl-dev kcat zstd python3-venv pkg-config
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test-deps build release test test-venv demo bench clean

all: build

# Installs only what is missing; prints nothing and does nothing when all packages are present.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing missing packages:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Only the tests need these: Debian's chromium opens the gateway's dashboard headless. Without it (no package archive)
# that test is skipped and says so.
TEST_DEB_PACKAGES := chromium
test-deps:
	@missing=""; for p in $(TEST_DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing missing test packages:$$missing"; \
		( $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing || \
		  ( $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing ) ) >/dev/null || \
		echo "warning: could not install$$missing; the dashboard test will be skipped"; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

TEST_VENV := $(CURDIR)/.build/test-venv

# Python for the interop tests: WebDataset and confluent-kafka (from PyPI; without network the tests that need them are
# skipped and say so) and Sluice's own client from clients/python, reinstalled every run (no network needed).
test-venv:
	@[ -x $(TEST_VENV)/bin/python ] && $(TEST_VENV)/bin/python -c 'import webdataset, confluent_kafka, safetensors' 2>/dev/null || \
		( ( [ -x $(TEST_VENV)/bin/python ] || python3 -m venv $(TEST_VENV) ) && \
		  $(TEST_VENV)/bin/pip install -q --retries 1 --timeout 20 webdataset confluent-kafka safetensors ) || \
		echo "warning: could not install Python webdataset, confluent-kafka or safetensors; their interop tests will be skipped"
	@[ -x $(TEST_VENV)/bin/python ] && ( $(TEST_VENV)/bin/pip install -q --retries 1 --timeout 20 --no-deps --force-reinstall ./clients/python || \
		$(TEST_VENV)/bin/pip install -q --no-build-isolation --no-deps --force-reinstall ./clients/python ) || \
		echo "warning: could not pip-install clients/python; its installed-package test will be skipped"
	@rm -rf clients/python/build clients/python/*.egg-info

test: deps test-deps test-venv
	$(SWIFT) build --build-tests
	SLUICE_TEST_PYTHON=$(TEST_VENV)/bin/python $(SWIFT) test --skip-build --parallel --num-workers 2

# The whole platform for DEMO_DURATION (empty: until Ctrl-C); state in ./var, a second run continues from it.
DEMO_DURATION ?= 2m
demo: build
	$(SWIFT) run --skip-build sluice demo --var var $(if $(DEMO_DURATION),--duration $(DEMO_DURATION))

# The benchmark suite in release mode: one table with the peers and ratios, JSON in .build/bench (docs/benchmarks.md).
bench: release
	python3 Benchmarks/suite.py

clean:
	rm -rf .build
