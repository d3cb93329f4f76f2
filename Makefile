# Two commands for a fresh machine:  make demo   and   make test
# DALI=cuda13 selects nvidia-dali-cuda130 instead of nvidia-dali-cuda120.
DALI ?= cuda12
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(DALI)

ifeq ($(filter $(DALI),cuda12 cuda13),)
$(error DALI must be cuda12 or cuda13, got '$(DALI)')
endif

.PHONY: test demo clean

# The stamp depends on the packaging files, so a second run reuses .venv
# and only reinstalls when setup.cfg or pyproject.toml change.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	# Both DALI wheels provide nvidia.dali: drop the one not selected.
	$(PY) -m pip uninstall -q -y nvidia-dali-cuda120 nvidia-dali-cuda130
	$(PY) -m pip install -q -e '.[$(DALI),cuda-headers,cuda-build,dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	$(PY) -m pytest -n auto

# The demo: mix real photos into a PNG grid, then train resnet8 with DALI and mixup on
# scikit-learn's handwritten digits (made once into out/digits), on the GPU if there is one.
demo: $(STAMP)
	mkdir -p out
	$(PY) -m dali_mixup.show --out out/mixup_grid.png
	test -d out/digits || $(PY) -m dali_mixup.datasets digits out/digits
	$(PY) -m train --recipe demo --data out/digits --out out/demo-run

clean:
	rm -rf $(VENV) *.egg-info
