# medviewer: `make demo` and `make test` are the quick start; both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo demo-models test fuzz bench gpu-check lint debian-tools dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps re-run pip only when pyproject.toml changes.
$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev,demo]'
	touch $@

demo: $(VENV)/.demo-installed
	$(VENV)/bin/medviewer demo

# The demo models' shipped weights (medviewer/demo/weights/): the full demo built with training,
# seed 0, by the project's own trainer: about 7 minutes on a 2-core CPU, then the chest and
# kidney models' training with simulated clicks from their unguided weights (`--tasks chest
# abdomen` remakes them alone; their shipped files were made with OMP_NUM_THREADS=1, about 3 and
# 6 minutes: the weights depend on the thread count). Commit what it writes.
demo-models: $(VENV)/.demo-installed
	$(PY) -m medviewer.demo.make_models

# dcmtk (dcmj2pnm), dicom3tools (dciodvfy) and dcm2niix check our output; Orthanc with its
# DICOMweb plugin is the real PACS of tests/pacs. Tests needing them skip without.
ORTHANC_DICOMWEB := /usr/share/orthanc/plugins/libOrthancDicomWeb.so
debian-tools:
	@if command -v dcmj2pnm >/dev/null && command -v dciodvfy >/dev/null && command -v dcm2niix >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing dcmtk, dicom3tools and dcm2niix"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk dicom3tools dcm2niix >/dev/null) \
		|| echo "note: could not install dcmtk/dicom3tools/dcm2niix; the tests that need them will skip"; \
	else echo "note: dcmtk/dicom3tools/dcm2niix missing and not root; the tests that need them will skip"; fi
	@if command -v Orthanc >/dev/null && [ -f $(ORTHANC_DICOMWEB) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing orthanc and orthanc-dicomweb"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null) \
		|| echo "note: could not install orthanc/orthanc-dicomweb; the PACS tests will skip"; \
	else echo "note: orthanc/orthanc-dicomweb missing and not root; the PACS tests will skip"; fi
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing postgresql"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "note: could not install postgresql; the PostgreSQL workspace tests will skip"; \
	else echo "note: postgresql missing and not root; the PostgreSQL workspace tests will skip"; fi

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collected nothing: that is a failure, not a pass.
# Headless by default (a desktop's display stays out of the GUI tests); `make demo` keeps it.
# On a CPU with bf16 (AMX / AVX-512 BF16) the tests that run models run again on the fp32 path
# that other CPUs take (MEDVIEWER_CPU_NO_BF16=1), so one machine checks both. The retrain story
# is not among them: training and its evaluation run fp32 on every CPU. The app's tests that run
# a model's inference are (proposals, Grad-CAM, a GUI that stays responsive meanwhile).
MODEL_TESTS := tests/inference tests/training tests/demo/test_build.py tests/demo/test_shipped.py \
	tests/test_cli.py tests/qt/test_ai_in_app.py tests/qt/test_demo_screenshots.py \
	tests/qt/test_never_freeze.py
test: export QT_QPA_PLATFORM ?= offscreen
test: $(VENV)/.dev-installed debian-tools lint
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	if $(PY) -c "from medviewer.inference.device import cpu_has_fast_bf16 as f; exit(not f())"; \
	then echo "the model tests again on the fp32 CPU path (MEDVIEWER_CPU_NO_BF16=1):"; \
		MEDVIEWER_CPU_NO_BF16=1 $(PY) -m pytest -q $(MODEL_TESTS); rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "error: pytest collected no model tests" >&2; exit 1; fi; \
		exit $$rc; \
	else echo "this CPU has no fast bf16: the run above took the fp32 path"; fi

# 2,000 seeded mutants of real files through info --verify, import and render, each under a
# time limit and a memory cap (tests/fuzz); `make test` runs 200. Prints the counts.
fuzz: $(VENV)/.dev-installed
	MEDVIEWER_FUZZ_MUTANTS=$${MEDVIEWER_FUZZ_MUTANTS:-2000} $(PY) -m pytest -q -s tests/fuzz

bench: $(VENV)/.dev-installed
	$(PY) bench/run.py

# The GPU path on a CUDA machine: GPU tests, inference and training benchmarks on cuda, a demo
# retrain; one summary (bench/gpu_check.sh). Uses the existing venv and installs nothing, so it
# runs offline; GPU_CHECK_DEVICE=cpu tries every step on the CPU.
gpu-check:
	PYTHON=$(PY) bash bench/gpu_check.sh

# One-folder app in dist/medviewer/ (see packaging/README.md); PyInstaller goes into the venv.
dist: $(VENV)/.demo-installed
	@$(PY) -c "import PyInstaller" 2>/dev/null || $(PIP) install --quiet pyinstaller
	$(VENV)/bin/pyinstaller --noconfirm packaging/medviewer.spec

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
