# The lab's commands; each is a script in scripts/ so the Dockerfile and CI share them.
.PHONY: lab setup test render figures
lab:    ## set up what is missing, then open JupyterLab on the index
	scripts/lab.sh
setup:  ## install the venv, evcxr_jupyter and the rust kernel (idempotent)
	scripts/setup.sh
test:   ## fmt, clippy, cargo test, then every notebook headless
	scripts/test.sh
render: ## execute every notebook (default parameters) into build/html/*.html
	scripts/setup.sh
	$${CONCLAB_VENV:-.venv}/bin/python tools/render.py
figures: ## re-make the reference figures in docs/figures (release CLI, every experiment)
	scripts/reference-figures.sh
