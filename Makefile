# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
CARGO ?= cargo
# The e2e tests and the demo destroy shards through the real store, which needs this feature.
TEST_FEATURES := --features bigfile-agent/fault-injection
export CARGO_TERM_COLOR ?= $(if $(CI),never,auto)

.PHONY: all deps build test lint contracts demo bench clean

all: build

deps:
	@packaging/dev-deps.sh
	@packaging/chain-deps.sh

build: deps
	$(CARGO) build --workspace

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --workspace --all-targets --locked $(TEST_FEATURES) -- -D warnings

# The Solidity contracts: format check, then unit, fuzz and invariant tests (offline, pinned solc).
contracts: deps
	cd chain/contracts && bin/forge fmt --check && bin/forge test

test: lint contracts
	$(CARGO) build --workspace --bins --locked $(TEST_FEATURES)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --locked $(TEST_FEATURES) --no-fail-fast; \
	else \
		$(CARGO) test --workspace --locked $(TEST_FEATURES) --no-fail-fast; \
	fi
	$(CARGO) test --workspace --doc --locked

demo: deps
	$(CARGO) build --workspace --bins --locked $(TEST_FEATURES)
	@packaging/demo.sh target/debug/bigfile-agent

bench: deps
	$(CARGO) build --release --locked -p bigfile-agent
	target/release/bigfile-agent bench storage
	$(CARGO) bench --locked -p bigfile-storage

clean:
	$(CARGO) clean
	rm -rf demo-run
