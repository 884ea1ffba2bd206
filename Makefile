# Every target installs what it needs first (make deps), so each works as the first command on a fresh clone.
VENV   ?= .venv
PY     := $(VENV)/bin/python
GO     ?= go
LIB    := python/datago/libdatago.so
GO_SRC := $(shell find go -name '*.go' -o -name '*.c' -o -name '*.h' -o -name go.mod)
export PYTHONPATH := $(CURDIR)/python

.PHONY: deps system-deps lib test lint go-test py-test demo bench wheel clean

deps: system-deps $(VENV)/.deps

# libvips (headers, pkg-config file and runtime) from Debian/Ubuntu packages when we are root.
system-deps:
	@if ! pkg-config --exists vips 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips-dev pkg-config >/dev/null; \
	  else echo "libvips is missing: install libvips-dev (e.g. sudo apt-get install libvips-dev pkg-config)" >&2; exit 1; fi; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is missing: install Go >= 1.22 (https://go.dev/dl)" >&2; exit 1; }

$(VENV)/.deps: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q cffi numpy pillow pytest ruff
	# The package itself, from the source tree (the library is built into python/datago by make lib).
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/datago-src.pth", "w").write(sys.argv[1] + "\n")' $(CURDIR)/python
	cd go && $(GO) mod download
	touch $@

lib: deps $(LIB)

$(LIB): $(GO_SRC) build.py
	$(PY) build.py

lint: deps
	@test -z "$$(gofmt -l go)" || { echo "gofmt needed:"; gofmt -l go; exit 1; }
	cd go && $(GO) vet ./...
	$(VENV)/bin/ruff check python tests build.py

go-test: deps
	cd go && $(GO) test -race ./...

py-test: lib
	$(PY) -m pytest -q tests

# The test command of README.md and .ci/run.
test: lint go-test py-test

demo: lib
	$(PY) -m pip install -q -r tests/bench/requirements.txt
	$(PY) tests/bench/demo.py

bench: lib
	$(PY) -m pip install -q -r tests/bench/requirements.txt
	$(PY) tests/bench/bench.py

wheel: deps
	$(PY) build.py --wheel dist

clean:
	rm -rf $(LIB) python/datago/libdatago.h dist .cache
