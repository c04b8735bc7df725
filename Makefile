# Developer and CI entry points. Everything installs into ./.venv (created on first use), so a fresh
# machine with Python >= 3.10, pip, Rust and maturin needs nothing else.
#
#   make demo    tokenizer train → prepare → inspect → verify → train a tiny LTG-BERT → eval mlm → fine-tune on sentiment
#                (the README's main job)
#   make test    cargo test + pytest (fetches the real corpora for the parity tests; includes the `aot` test, which
#                compiles every Triton kernel for sm_80 / sm_90 without a GPU)
#   make lint    cargo fmt --check, cargo clippy -D warnings, ruff, mypy.stubtest of bertkit/_core.pyi against the build

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
DATA ?= data
export BERTKIT_DATA := $(abspath $(DATA))

.PHONY: venv build demo test test-rs test-py lint fetch-data bench bench-google-env clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.9.4,<2" "numpy>=1.24" "typer>=0.29,<0.30" "rich>=13" "tokenizers>=0.15" \
		"xxhash>=3" "pytest>=8" "ruff>=0.6" "torch>=2.3" "transformers>=4.40" "safetensors>=0.4" "matplotlib>=3.7" \
		"sentence-transformers>=3" "datasets>=2.18" "pyarrow>=14" "scikit-learn>=1.3" "ray>=2.9" "mypy>=1.11" \
		"tensorboard>=2.14"
	touch $@

venv: $(VENV)/.installed

build: venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet

$(DATA)/.small: scripts/fetch_data.py scripts/prepare_tasks.py | venv
	$(VPY) scripts/fetch_data.py --out $(DATA) --small
	$(VPY) scripts/prepare_tasks.py --data $(DATA) --what sentiment
	touch $@

$(DATA)/.full: scripts/fetch_data.py scripts/prepare_tasks.py | venv
	$(VPY) scripts/fetch_data.py --out $(DATA)
	$(VPY) scripts/prepare_tasks.py --data $(DATA)
	touch $@ $(DATA)/.small

fetch-data: $(DATA)/.full

demo: build $(DATA)/.small
	rm -rf runs/demo/tokenizer
	$(VENV)/bin/bertkit tokenizer train $(DATA)/news.txt --vocab-size 2048 --out runs/demo/tokenizer
	$(VENV)/bin/bertkit prepare $(DATA)/news.txt --tokenizer runs/demo/tokenizer/vocab.txt --out runs/demo/data \
		--overwrite
	$(VENV)/bin/bertkit inspect runs/demo/data --sample 1
	$(VENV)/bin/bertkit verify runs/demo/data
	rm -rf runs/demo/run
	$(VENV)/bin/bertkit train --data runs/demo/data --out runs/demo/run --config configs/demo.toml
	$(VENV)/bin/bertkit eval mlm runs/demo/run --data runs/demo/data --show 5
	$(VENV)/bin/bertkit eval classify runs/demo/run --data $(DATA)/tasks/sentiment --epochs 1 --max-len 64 --lr 5e-4 \
		--quiet
	$(VENV)/bin/bertkit eval classify --bow --data $(DATA)/tasks/sentiment --out runs/demo/bow-sentiment.json --quiet
	@echo "loss curve: runs/demo/run/loss_curve.png"

test-rs:
	cargo test --release

test-py: build $(DATA)/.full
	$(VPY) -m pytest -q
	TRITON_INTERPRET=1 $(VPY) -m pytest -q -m triton tests/ops

test: test-rs test-py

lint: build
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VPY) -m mypy.stubtest bertkit._core

bench: build $(DATA)/.full
	$(VPY) benchmarks/prepare_bench.py

clean:
	rm -rf target $(VENV) runs

# Google's create_pretraining_data.py (PyPI bert-tensorflow 1.0.4) for benchmarks/prepare_bench.py.
bench-google-env:
	$(PYTHON) -m venv .venv-google
	.venv-google/bin/pip install -q tensorflow-cpu bert-tensorflow==1.0.4
