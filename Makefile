# Two entry points for a fresh clone: `make run` (the chatbot) and `make test` (the whole suite).
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

# llama.cpp is compiled here for this CPU (-march=native: the fastest), but never with AMX:
# ggml's AMX kernels crash with SIGSEGV at the first inference on many virtualised AMX CPUs
# (llama.cpp #20824). GCC's explicit -mno-* flags win over what -march=native turns on, so the
# build holds no AMX code whatever the CPU. (The model is also loaded without extra buffer
# types, the only path to AMX kernels: see rag/native.py. tests/test_native.py checks both.)
LLAMA_CPP_VERSION := 0.3.36
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
# pip's wheel cache does not key on CMAKE_ARGS (it could hand back a native build with AMX), so
# the wheel is built with --no-cache-dir into a folder keyed by version, flags and this CPU's
# features: another CPU gets its own build, never one that may use instructions it lacks.
CPU_KEY := $(shell { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null; echo '$(LLAMA_CMAKE_ARGS)'; } | sha256sum | cut -c1-12)
WHEELS := $(HOME)/.cache/rag/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(CPU_KEY)
# The stamp names the CPU too: on another CPU the next make reinstalls.
STAMP  := $(VENV)/.installed-$(CPU_KEY)

.PHONY: setup run chat test test-fast browser-deps llama-wheel clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@$(MAKE) --no-print-directory llama-wheel
	$(BIN)/pip install --progress-bar off --no-deps --force-reinstall $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(BIN)/pip install --progress-bar off -e '.[test]'
	@echo "Checking the embedded model (llama.cpp build, a one-token answer in a worker process)…"
	@$(BIN)/rag doctor --model || { echo "Setup stopped: the embedded model failed its self-test (above). See README: When setup or the model fails."; exit 1; }
	rm -f $(VENV)/.installed-*
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

# llama-cpp-python built from source for this CPU without AMX (3-12 minutes on 2 cores, once per CPU).
llama-wheel:
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		for tool in cc c++; do command -v $$tool >/dev/null || { echo "Setup stopped: no C/C++ compiler ($$tool) to build llama.cpp. Install one: apt-get install build-essential"; exit 1; }; done; \
		echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) for this CPU, without AMX (3-12 minutes, once)…"; \
		rm -rf $(WHEELS).tmp; \
		CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/pip wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
			-w $(WHEELS).tmp llama-cpp-python==$(LLAMA_CPP_VERSION) > $(VENV)/llama-build.log 2>&1 \
			|| { tail -n 30 $(VENV)/llama-build.log; echo "Setup stopped: building llama-cpp-python failed (log above, whole log in $(VENV)/llama-build.log)."; exit 1; }; \
		mkdir -p $$(dirname $(WHEELS)) && rm -rf $(WHEELS) && mv $(WHEELS).tmp $(WHEELS); \
	fi

test-fast: setup
	$(BIN)/python -m pytest -m "not llm and not browser and not server"

clean:
	rm -rf $(VENV) .rag .pytest_cache
