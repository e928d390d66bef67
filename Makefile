# Postroom: `make run` (the app), `make serve` (headless), `make test` (every test). Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian programs the tests drive as real third-party clients.
TEST_PEERS := swaks libnet-ssleay-perl curl isync fetchmail getmail6 openssl offlineimap3 neomutt tmux dnsmasq-base
PEER_CMDS := swaks curl mbsync fetchmail getmail openssl offlineimap neomutt tmux /usr/sbin/dnsmasq
DATA_DIR ?=
SERVE_ARGS ?=

.PHONY: run serve test test-packaging lint typecheck peers bench package clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/postroom $(if $(DATA_DIR),--data-dir $(DATA_DIR))

serve: $(STAMP)
	$(BIN)/postroom $(if $(DATA_DIR),--data-dir $(DATA_DIR)) serve $(SERVE_ARGS)

# Installs the Debian peers only when one is missing (needs root or sudo and apt-get).
peers:
	@missing=""; for c in $(PEER_CMDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing test peers (missing:$$missing)"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(TEST_PEERS) >/dev/null; \
	fi

test: $(STAMP) peers
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m 'not packaging' $(PYTEST_ARGS)

# Builds the .deb and runs the install / serve / remove cycle on this machine (root; about 5 minutes).
test-packaging: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m packaging $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check engine desktop tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

package: $(STAMP)
	$(MAKE) -C packaging deb

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
