# Two entry points for a fresh clone: `make run` (the chatbot) and `make test` (the whole suite).
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# llama-cpp-python builds from source (about 12 minutes on 2 cores, once; pip caches the wheel).
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup run chat test test-fast browser-deps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar off -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The chat window on http://127.0.0.1:8501 (printed when it is ready).
run: setup
	$(BIN)/python -m streamlit run streamlit_app.py --server.address 127.0.0.1 --server.port $(or $(PORT),8501)

# The same pipeline in the terminal.
chat: setup
	$(BIN)/rag chat

test: setup browser-deps
	$(BIN)/python -m pytest

# Debian's Chromium (and an emoji font) for the real-browser test; Playwright drives it, never downloads one.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian chromium for the browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null ) \
			|| echo "WARNING: could not install chromium; the browser test will be skipped"; \
	fi

test-fast: setup
	$(BIN)/python -m pytest -m "not llm and not browser and not server"

clean:
	rm -rf $(VENV) .rag .pytest_cache
